/**
 * The log drawn by a real terminal emulator, `@xterm/xterm` (what
 * JupyterLab's own terminal uses): colours, `\r`, cursor movement and
 * multi-bar progress show as in a terminal. It is read-only (no stdin), keeps
 * the last `scrollback` lines, sizes itself to its node (fit addon), searches
 * (search addon) and follows JupyterLab's theme.
 *
 * Following the end is xterm's own behaviour: new output keeps the viewport
 * at the bottom, unless the user has scrolled up; then the viewport stays on
 * the lines they look at, until they scroll back down.
 */
import { FitAddon } from '@xterm/addon-fit';
import { SearchAddon } from '@xterm/addon-search';
import { Terminal } from '@xterm/xterm';
import { IDisposable } from '@lumino/disposable';

import {
  bodyVariables,
  terminalFont,
  terminalTheme,
  watchTheme
} from './terminaltheme';
import { FrameWriter } from './writebatch';

/** Lines the terminal keeps (its scrollback, besides the screen). */
export const SCROLLBACK_LINES = 5000;

/**
 * Written after each reset: CAN ends any escape sequence the earlier text
 * left open, RIS (`ESC c`) resets the terminal and clears its scrollback,
 * and DECTCEM hides the cursor, which a read-only log has no use for.
 */
const RESET = '\x18\x1bc\x1b[?25l';

/** Options for a `LogTerminal`. */
export interface ILogTerminalOptions {
  /** Lines kept besides the screen. */
  scrollback?: number;
  /** Called after each batch of text the terminal has parsed. */
  onWritten?: () => void;
  /** Called after the terminal took a new JupyterLab theme. */
  onThemeChanged?: () => void;
}

/** A read-only xterm terminal that shows a log. */
export class LogTerminal implements IDisposable {
  constructor(options: ILogTerminalOptions = {}) {
    this.scrollback = options.scrollback ?? SCROLLBACK_LINES;
    this._onWritten = options.onWritten ?? null;
    this._onThemeChanged = options.onThemeChanged ?? null;
    this.node.className = 'jp-JobLog-terminal';
    const read = bodyVariables();
    this.terminal = new Terminal({
      disableStdin: true,
      convertEol: true,
      scrollback: this.scrollback,
      // The search addon marks matches with decorations, a proposed API.
      allowProposedApi: true,
      cursorBlink: false,
      cursorInactiveStyle: 'none',
      theme: terminalTheme(read),
      ...terminalFont(read)
    });
    this.terminal.loadAddon(this._fit);
    this.terminal.loadAddon(this.search);
    this.terminal.attachCustomKeyEventHandler(this._onKey);
    this._writer = new FrameWriter({
      write: (text, done) => this.terminal.write(text, done)
    });
    this._theme = watchTheme(() => this._applyTheme());
    this._writer.add(RESET);
  }

  /** The node the terminal draws in (it fills it). */
  readonly node = document.createElement('div');
  readonly terminal: Terminal;
  readonly search = new SearchAddon();
  readonly scrollback: number;

  /**
   * Whether the terminal dropped its oldest lines: its buffer is full, so
   * each new line pushes one out.
   */
  get isTrimmed(): boolean {
    return (
      this.terminal.buffer.normal.length >= this.terminal.rows + this.scrollback
    );
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  /** Queue text; the terminal gets it at the next animation frame. */
  write(text: string): void {
    this._writer.add(text);
    this._notify();
  }

  /** Start over: drop what is shown and what is queued. */
  reset(): void {
    this._writer.clear();
    this._writer.add(RESET);
    this._notify();
  }

  /** Resolves once the terminal has parsed everything written so far. */
  written(): Promise<void> {
    return this._writer.written();
  }

  /**
   * Draw in `node` and fit the terminal to it, once the node is shown (xterm
   * measures its font there); before that, it does nothing. Text written
   * meanwhile is kept in the terminal's buffer.
   */
  open(): void {
    if (!this._hasSize()) {
      return;
    }
    if (!this._opened) {
      this.terminal.open(this.node);
      this._opened = true;
    }
    this._fit.fit();
  }

  /** Resize the terminal to its node, if it is open and shown. */
  fit(): void {
    if (this._opened && this._hasSize()) {
      this._fit.fit();
    }
  }

  focus(): void {
    if (this._opened) {
      this.terminal.focus();
    }
  }

  /**
   * The text of the terminal's buffer (scrollback and screen) as lines: a
   * line the terminal wrapped is one line, and trailing blank lines are left
   * out.
   */
  bufferLines(): string[] {
    const buffer = this.terminal.buffer.active;
    const lines: string[] = [];
    for (let y = 0; y < buffer.length; y++) {
      const line = buffer.getLine(y);
      if (!line) {
        continue;
      }
      const text = line.translateToString(true);
      if (line.isWrapped && lines.length > 0) {
        lines[lines.length - 1] += text;
      } else {
        lines.push(text);
      }
    }
    while (lines.length > 0 && lines[lines.length - 1] === '') {
      lines.pop();
    }
    return lines;
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    this._theme.dispose();
    this._writer.dispose();
    this.terminal.dispose();
  }

  private _hasSize(): boolean {
    return (
      this.node.isConnected &&
      this.node.offsetWidth > 0 &&
      this.node.offsetHeight > 0
    );
  }

  /** Call `onWritten` once what was just queued has been parsed. */
  private _notify(): void {
    void this._writer.written().then(() => {
      if (!this._disposed) {
        this._onWritten?.();
      }
    });
  }

  private _applyTheme(): void {
    const read = bodyVariables();
    this.terminal.options.theme = terminalTheme(read);
    Object.assign(this.terminal.options, terminalFont(read));
    this.fit();
    this._onThemeChanged?.();
  }

  /**
   * Keys xterm would send to a program, which a log has not: scrolling keys
   * scroll, and Ctrl/Cmd-C with a selection copies (the browser's copy
   * event; xterm would take the key as ^C). Ctrl/Cmd-F is the view's search.
   * Returns false for a key xterm is to leave alone.
   */
  private readonly _onKey = (event: KeyboardEvent): boolean => {
    const accel = event.ctrlKey || event.metaKey;
    const key = event.key.toLowerCase();
    if (
      accel &&
      (key === 'f' || (key === 'c' && this.terminal.hasSelection()))
    ) {
      return false;
    }
    if (event.type !== 'keydown') {
      return true;
    }
    const scroll: Record<string, () => void> = {
      PageUp: () => this.terminal.scrollPages(-1),
      PageDown: () => this.terminal.scrollPages(1),
      Home: () => this.terminal.scrollToTop(),
      End: () => this.terminal.scrollToBottom()
    };
    const action = scroll[event.key];
    if (action && !event.altKey) {
      action();
      event.preventDefault();
      return false;
    }
    return true;
  };

  private readonly _fit = new FitAddon();
  private readonly _writer: FrameWriter;
  private readonly _theme: IDisposable;
  private readonly _onWritten: (() => void) | null;
  private readonly _onThemeChanged: (() => void) | null;
  private _opened = false;
  private _disposed = false;
}
