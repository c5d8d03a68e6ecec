/**
 * The log terminal's look, taken from JupyterLab's theme: its CSS variables
 * give the colours and the code font, and a change of theme (JupyterLab
 * marks it on `document.body` as `data-jp-theme-light` and
 * `data-jp-theme-name`) makes the terminal read them again.
 */
import type { ITerminalOptions, ITheme } from '@xterm/xterm';
import type { ISearchOptions } from '@xterm/addon-search';
import { IDisposable } from '@lumino/disposable';

/** Reads a CSS custom property ('' when it is not set). */
export type ReadVariable = (name: string) => string;

/** Names of the 16 ANSI colours in xterm's theme, in SGR order (30-37, 90-97). */
const ANSI_NAMES: readonly (keyof ITheme)[] = [
  'black',
  'red',
  'green',
  'yellow',
  'blue',
  'magenta',
  'cyan',
  'white',
  'brightBlack',
  'brightRed',
  'brightGreen',
  'brightYellow',
  'brightBlue',
  'brightMagenta',
  'brightCyan',
  'brightWhite'
];

/**
 * The terminal's colours: JupyterLab's background and font colours, and for
 * the 16 ANSI colours `--jp-jobmagic-ansi-0` ... `-15` (style/logview.css:
 * the palette JupyterLab gives notebook outputs, so a job's log looks like
 * the same program's output in a cell).
 */
export function terminalTheme(read: ReadVariable): ITheme {
  const value = (name: string, fallback: string): string =>
    read(name).trim() || fallback;
  const background = value('--jp-layout-color0', '#ffffff');
  const foreground = value('--jp-ui-font-color0', '#000000');
  const theme: ITheme = {
    background,
    foreground,
    cursor: foreground,
    cursorAccent: background,
    selectionBackground: value(
      '--jp-editor-selected-focused-background',
      'rgba(33, 150, 243, 0.24)'
    ),
    selectionInactiveBackground: value(
      '--jp-editor-selected-background',
      '#d9d9d9'
    )
  };
  ANSI_NAMES.forEach((name, index) => {
    const colour = read(`--jp-jobmagic-ansi-${index}`).trim();
    if (colour) {
      (theme as Record<string, string>)[name] = colour;
    }
  });
  return theme;
}

/** The terminal's font: JupyterLab's code font, size and line height. */
export function terminalFont(
  read: ReadVariable
): Pick<ITerminalOptions, 'fontFamily' | 'fontSize' | 'lineHeight'> {
  const family = read('--jp-code-font-family').trim();
  const size = parseFloat(read('--jp-code-font-size'));
  const lineHeight = parseFloat(read('--jp-code-line-height'));
  return {
    fontFamily: family || 'monospace',
    fontSize: Number.isFinite(size) && size > 0 ? size : 13,
    // xterm takes a factor; JupyterLab gives one (1.3077), or a length.
    lineHeight:
      Number.isFinite(lineHeight) && lineHeight >= 1 && lineHeight < 3
        ? lineHeight
        : 1.2
  };
}

/**
 * How the search addon marks matches. It colours only their background and
 * leaves the text in the terminal's foreground (black on a light theme,
 * white on a dark one), so the colours are ones both read well on: the
 * brand blue for the current match, the mid grey of `--jp-layout-color3`
 * for the others. xterm's decorations take `#RRGGBB` only: `toHex` turns a
 * CSS colour into that ('' for one it cannot, a translucent one say).
 */
export function searchDecorations(
  read: ReadVariable,
  toHex: (colour: string) => string
): NonNullable<ISearchOptions['decorations']> {
  const hex = (name: string, fallback: string): string =>
    toHex(read(name).trim()) || fallback;
  const active = hex('--jp-brand-color1', '#1976d2');
  const other = hex('--jp-layout-color3', '#9e9e9e');
  return {
    matchBackground: other,
    matchOverviewRuler: other,
    activeMatchBackground: active,
    activeMatchColorOverviewRuler: active
  };
}

/** Reads CSS custom properties as `document.body` has them. */
export function bodyVariables(): ReadVariable {
  const style = getComputedStyle(document.body);
  return name => style.getPropertyValue(name);
}

/**
 * `colour` as `#rrggbb`, as the browser resolves it (names, `rgb()`,
 * `var()`-free values); '' when it is translucent or not a colour.
 */
export function cssColourToHex(colour: string): string {
  const context = document.createElement('canvas').getContext('2d');
  if (!colour || context === null) {
    return '';
  }
  // A canvas normalises what it is given: `#rrggbb` for an opaque colour.
  context.fillStyle = '#000000';
  context.fillStyle = colour;
  const resolved = String(context.fillStyle);
  return /^#[0-9a-f]{6}$/i.test(resolved) ? resolved : '';
}

/** Calls `onChange` after each change of JupyterLab's theme. */
export function watchTheme(onChange: () => void): IDisposable {
  const observer = new MutationObserver(onChange);
  observer.observe(document.body, {
    attributes: true,
    attributeFilter: ['data-jp-theme-light', 'data-jp-theme-name']
  });
  let disposed = false;
  return {
    get isDisposed() {
      return disposed;
    },
    dispose() {
      disposed = true;
      observer.disconnect();
    }
  };
}
