/**
 * A bounded, line-based model of what a terminal shows for a stream of output.
 *
 * Carriage returns move the cursor back to the start of the line and later
 * text overwrites what was there, so a progress bar that redraws itself with
 * `\r` stays one line showing its latest state. ANSI SGR styles are kept per
 * run of text. Only the last `maxChars` characters (and `maxLines` lines)
 * are kept: older lines are dropped from the front.
 */
import {
  AnsiTokenizer,
  DEFAULT_STYLE,
  ITextStyle,
  applySgr,
  sameStyle
} from './ansi';

/** A run of text drawn in one style. */
export interface ISegment {
  text: string;
  style: ITextStyle;
}

/** One line of the screen: its runs of text and their total length. */
export interface ILine {
  segments: ISegment[];
  length: number;
}

/** Options for a `TerminalText`. */
export interface ITerminalTextOptions {
  /** Characters kept, counting one per line end. */
  maxChars: number;
  /** Lines kept, including the line being written. */
  maxLines?: number;
}

/** The terminal's lines, fed with decoded text through `write`. */
export class TerminalText {
  constructor(options: ITerminalTextOptions) {
    this._maxChars = Math.max(1, options.maxChars);
    this._maxLines = Math.max(1, options.maxLines ?? 20000);
  }

  /**
   * The lines kept, oldest first; the last one is the line being written
   * (empty after a line end).
   */
  get lines(): ReadonlyArray<ILine> {
    return this._lines;
  }

  /** The number (from 0, since the last reset) of `lines[0]`. */
  get firstLineNumber(): number {
    return this._firstLineNumber;
  }

  /** Feed decoded output. */
  write(text: string): void {
    for (const token of this._tokenizer.feed(text)) {
      if (token.kind === 'text') {
        this._writeText(token.text);
      } else if (token.kind === 'control') {
        this._control(token.char);
      } else {
        this._csi(token.params, token.final);
      }
    }
    this._trim();
  }

  /** Forget everything (the stream jumped ahead). */
  reset(): void {
    this._tokenizer.reset();
    this._lines = [emptyLine()];
    this._firstLineNumber = 0;
    this._storedChars = 0;
    this._column = 0;
    this._style = DEFAULT_STYLE;
    this._changedFrom = 0;
  }

  /**
   * The number of the first line that changed since the previous call
   * (`Infinity` when none did). Lines before `firstLineNumber` were dropped.
   */
  takeChanges(): number {
    const from = this._changedFrom;
    this._changedFrom = Infinity;
    return from;
  }

  private get _current(): ILine {
    return this._lines[this._lines.length - 1];
  }

  private _markCurrentChanged(): void {
    const number = this._firstLineNumber + this._lines.length - 1;
    this._changedFrom = Math.min(this._changedFrom, number);
  }

  private _control(char: string): void {
    if (char === '\n') {
      this._storedChars += this._current.length + 1;
      this._lines.push(emptyLine());
      this._column = 0;
      this._markCurrentChanged();
    } else if (char === '\r') {
      this._column = 0;
    } else if (char === '\b') {
      this._column = Math.max(0, this._column - 1);
    }
    // Other control characters (bell, form feed, ...) show nothing.
  }

  private _csi(params: string, final: string): void {
    if (/[^0-9;:]/.test(params)) {
      return; // private modes such as `ESC [ ? 25 l` (hide cursor)
    }
    const n = Math.max(1, parseInt(params, 10) || 1);
    if (final === 'm') {
      this._style = applySgr(this._style, params);
    } else if (final === 'K') {
      this._eraseInLine(parseInt(params, 10) || 0);
    } else if (final === 'G') {
      this._column = n - 1;
    } else if (final === 'C') {
      this._column += n;
    } else if (final === 'D') {
      this._column = Math.max(0, this._column - n);
    }
    // Cursor moves between lines cannot be shown in an append-only view.
  }

  private _eraseInLine(mode: number): void {
    const line = this._current;
    if (mode === 0) {
      replaceLine(line, sliceSegments(line.segments, 0, this._column));
    } else {
      const blank = ' '.repeat(Math.min(this._column, line.length));
      const rest =
        mode === 1 ? sliceSegments(line.segments, this._column, Infinity) : [];
      replaceLine(line, [{ text: blank, style: DEFAULT_STYLE }, ...rest]);
    }
    this._markCurrentChanged();
  }

  private _writeText(text: string): void {
    const line = this._current;
    if (this._column > line.length) {
      appendSegment(
        line,
        ' '.repeat(this._column - line.length),
        DEFAULT_STYLE
      );
    }
    if (this._column === line.length) {
      appendSegment(line, text, this._style);
    } else {
      const end = this._column + text.length;
      replaceLine(line, [
        ...sliceSegments(line.segments, 0, this._column),
        { text, style: this._style },
        ...sliceSegments(line.segments, end, Infinity)
      ]);
    }
    this._column += text.length;
    this._markCurrentChanged();
  }

  /** Drop the oldest lines until the kept text fits the limits. */
  private _trim(): void {
    const current = this._current;
    if (current.length > this._maxChars) {
      // One huge line without a line end: keep its tail.
      const cut = current.length - this._maxChars;
      replaceLine(current, sliceSegments(current.segments, cut, Infinity));
      this._column = Math.max(0, this._column - cut);
      this._markCurrentChanged();
    }
    let drop = 0;
    let stored = this._storedChars;
    while (
      drop < this._lines.length - 1 &&
      (stored + current.length > this._maxChars ||
        this._lines.length - drop > this._maxLines)
    ) {
      stored -= this._lines[drop].length + 1;
      drop++;
    }
    if (drop > 0) {
      this._lines.splice(0, drop);
      this._firstLineNumber += drop;
      this._storedChars = stored;
    }
  }

  private readonly _maxChars: number;
  private readonly _maxLines: number;
  private readonly _tokenizer = new AnsiTokenizer();
  private _lines: ILine[] = [emptyLine()];
  private _firstLineNumber = 0;
  /** Characters in all lines but the current one, one more per line end. */
  private _storedChars = 0;
  private _column = 0;
  private _style: ITextStyle = DEFAULT_STYLE;
  private _changedFrom = 0;
}

function emptyLine(): ILine {
  return { segments: [], length: 0 };
}

function appendSegment(line: ILine, text: string, style: ITextStyle): void {
  if (!text) {
    return;
  }
  const last = line.segments[line.segments.length - 1];
  if (last && sameStyle(last.style, style)) {
    last.text += text;
  } else {
    line.segments.push({ text, style });
  }
  line.length += text.length;
}

function replaceLine(line: ILine, segments: ISegment[]): void {
  line.segments = [];
  line.length = 0;
  for (const segment of segments) {
    appendSegment(line, segment.text, segment.style);
  }
}

/** The runs covering characters `[start, end)` of a line. */
function sliceSegments(
  segments: ISegment[],
  start: number,
  end: number
): ISegment[] {
  const result: ISegment[] = [];
  let position = 0;
  for (const segment of segments) {
    const segmentEnd = position + segment.text.length;
    if (segmentEnd > start && position < end) {
      const text = segment.text.slice(
        Math.max(0, start - position),
        Math.min(segment.text.length, end - position)
      );
      result.push({ text, style: segment.style });
    }
    position = segmentEnd;
  }
  return result;
}
