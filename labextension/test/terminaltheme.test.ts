/**
 * The terminal's colours and font come from JupyterLab's CSS variables.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  searchDecorations,
  terminalFont,
  terminalTheme
} from '../src/terminaltheme';

/** Reads variables from a map, '' for the others (as getPropertyValue). */
function variables(values: Record<string, string>): (name: string) => string {
  return name => values[name] ?? '';
}

describe('terminalTheme', () => {
  it("takes the theme's background, font colour and ANSI palette", () => {
    const theme = terminalTheme(
      variables({
        '--jp-layout-color0': ' #111',
        '--jp-ui-font-color0': '#fff',
        '--jp-editor-selected-focused-background': 'rgba(33,150,243,.24)',
        '--jp-jobmagic-ansi-1': '#e75c58',
        '--jp-jobmagic-ansi-15': '#a1a6b2'
      })
    );
    assert.equal(theme.background, '#111');
    assert.equal(theme.foreground, '#fff');
    assert.equal(theme.cursorAccent, '#111');
    assert.equal(theme.selectionBackground, 'rgba(33,150,243,.24)');
    assert.equal(theme.red, '#e75c58');
    assert.equal(theme.brightWhite, '#a1a6b2');
    assert.equal(theme.green, undefined, "xterm's own where none is set");
  });

  it('falls back to black on white without variables', () => {
    const theme = terminalTheme(variables({}));
    assert.equal(theme.background, '#ffffff');
    assert.equal(theme.foreground, '#000000');
  });
});

describe('terminalFont', () => {
  it("is JupyterLab's code font, size and line height", () => {
    assert.deepEqual(
      terminalFont(
        variables({
          '--jp-code-font-family': " Menlo, 'DejaVu Sans Mono', monospace",
          '--jp-code-font-size': '13px',
          '--jp-code-line-height': '1.3077'
        })
      ),
      {
        fontFamily: "Menlo, 'DejaVu Sans Mono', monospace",
        fontSize: 13,
        lineHeight: 1.3077
      }
    );
  });

  it('keeps to sane values for missing or odd ones', () => {
    assert.deepEqual(
      terminalFont(variables({ '--jp-code-line-height': '17px' })),
      { fontFamily: 'monospace', fontSize: 13, lineHeight: 1.2 }
    );
  });
});

describe('searchDecorations', () => {
  it("marks matches in the theme's blue and grey, as #RRGGBB", () => {
    const hex: Record<string, string> = {
      '#1976d2': '#1976d2',
      'var-free grey': '#bdbdbd'
    };
    const decorations = searchDecorations(
      variables({
        '--jp-brand-color1': '#1976d2',
        '--jp-layout-color3': 'var-free grey'
      }),
      colour => hex[colour] ?? ''
    );
    assert.deepEqual(decorations, {
      matchBackground: '#bdbdbd',
      matchOverviewRuler: '#bdbdbd',
      activeMatchBackground: '#1976d2',
      activeMatchColorOverviewRuler: '#1976d2'
    });
  });

  it('falls back to fixed colours for ones that have no #RRGGBB', () => {
    const decorations = searchDecorations(variables({}), () => '');
    assert.equal(decorations.activeMatchBackground, '#1976d2');
    assert.equal(decorations.matchBackground, '#9e9e9e');
  });
});
