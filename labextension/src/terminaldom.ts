/**
 * Draws a `TerminalText` into a `<pre>`, touching only the lines that changed.
 */
import { ITextStyle, paletteColor } from './ansi';
import { ILine, TerminalText } from './terminal';

/** Keeps a `<pre>` element in step with a terminal's lines. */
export class TerminalRenderer {
  constructor(terminal: TerminalText) {
    this._terminal = terminal;
    this.node.className = 'jp-JobLog-text';
  }

  /** The element the lines are drawn into. */
  readonly node = document.createElement('pre');

  /** Remove every line (after the terminal was reset). */
  clear(): void {
    this.node.replaceChildren();
    this._firstRendered = 0;
  }

  /** Bring the DOM in line with the terminal. */
  render(): void {
    const terminal = this._terminal;
    const pre = this.node;
    const from = terminal.takeChanges();
    // Lines dropped from the front of the terminal.
    let dropped = Math.min(
      terminal.firstLineNumber - this._firstRendered,
      pre.childNodes.length
    );
    while (dropped-- > 0) {
      pre.firstChild?.remove();
    }
    this._firstRendered = terminal.firstLineNumber;
    // Lines that changed are drawn again.
    const keep = Math.max(
      0,
      Math.min(from - this._firstRendered, pre.childNodes.length)
    );
    while (pre.childNodes.length > keep) {
      pre.lastChild?.remove();
    }
    const lines = terminal.lines;
    const fragment = document.createDocumentFragment();
    for (let i = keep; i < lines.length; i++) {
      fragment.appendChild(renderLine(lines[i], i < lines.length - 1));
    }
    pre.appendChild(fragment);
  }

  private readonly _terminal: TerminalText;
  /** The terminal line number of the first line in the DOM. */
  private _firstRendered = 0;
}

/** One terminal line as DOM: styled spans, then a line end unless it is the open line. */
function renderLine(line: ILine, ended: boolean): HTMLElement {
  const element = document.createElement('span');
  element.className = 'jp-JobLog-line';
  for (const segment of line.segments) {
    const attributes = styleAttributes(segment.style);
    if (!attributes) {
      element.appendChild(document.createTextNode(segment.text));
      continue;
    }
    const span = document.createElement('span');
    span.textContent = segment.text;
    if (attributes.className) {
      span.className = attributes.className;
    }
    if (attributes.css) {
      span.style.cssText = attributes.css;
    }
    element.appendChild(span);
  }
  if (ended) {
    element.appendChild(document.createTextNode('\n'));
  }
  return element;
}

/** CSS classes and inline style for a text style; `null` for the default style. */
function styleAttributes(
  style: ITextStyle
): { className: string; css: string } | null {
  let fg = style.fg;
  let bg = style.bg;
  const classes: string[] = [];
  const css: string[] = [];
  if (style.inverse) {
    [fg, bg] = [bg, fg];
    if (fg === null) {
      classes.push('jp-JobLog-inverseFg');
    }
    if (bg === null) {
      classes.push('jp-JobLog-inverseBg');
    }
  }
  for (const [color, kind, property] of [
    [fg, 'fg', 'color'],
    [bg, 'bg', 'background-color']
  ] as const) {
    if (typeof color === 'number' && color < 16) {
      classes.push(`jp-JobLog-${kind}${color}`);
    } else if (color !== null) {
      const value = typeof color === 'number' ? paletteColor(color) : color;
      css.push(`${property}: ${value}`);
    }
  }
  if (style.bold) {
    classes.push('jp-JobLog-bold');
  }
  if (style.dim) {
    classes.push('jp-JobLog-dim');
  }
  if (style.italic) {
    classes.push('jp-JobLog-italic');
  }
  if (style.underline) {
    classes.push('jp-JobLog-underline');
  }
  if (style.strikethrough) {
    classes.push('jp-JobLog-strike');
  }
  if (classes.length === 0 && css.length === 0) {
    return null;
  }
  return { className: classes.join(' '), css: css.join('; ') };
}
