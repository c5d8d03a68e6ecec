/**
 * ANSI escape sequences: splitting terminal output into text, control
 * characters and escape sequences, and the SGR ("select graphic rendition")
 * text style they set.
 *
 * Only what a log view needs: SGR colours and attributes are kept, a few
 * cursor sequences are passed on for the line model, everything else (OSC
 * titles, charset switches, private modes) is dropped.
 */

/** A colour: an index into the 256-colour palette, or `#rrggbb`. */
export type Color = number | string;

/** How a run of text is drawn. Instances are immutable. */
export interface ITextStyle {
  readonly fg: Color | null;
  readonly bg: Color | null;
  readonly bold: boolean;
  readonly dim: boolean;
  readonly italic: boolean;
  readonly underline: boolean;
  readonly inverse: boolean;
  readonly strikethrough: boolean;
}

/** The style of text no SGR sequence has touched. */
export const DEFAULT_STYLE: ITextStyle = Object.freeze({
  fg: null,
  bg: null,
  bold: false,
  dim: false,
  italic: false,
  underline: false,
  inverse: false,
  strikethrough: false
});

/** Whether two styles draw text the same way. */
export function sameStyle(a: ITextStyle, b: ITextStyle): boolean {
  return (
    a === b ||
    (a.fg === b.fg &&
      a.bg === b.bg &&
      a.bold === b.bold &&
      a.dim === b.dim &&
      a.italic === b.italic &&
      a.underline === b.underline &&
      a.inverse === b.inverse &&
      a.strikethrough === b.strikethrough)
  );
}

/**
 * The style after an SGR sequence (`ESC [ params m`).
 *
 * @param params - The raw parameter string, e.g. `"1;38;5;208"`; empty means reset.
 */
export function applySgr(style: ITextStyle, params: string): ITextStyle {
  // Colon sub-parameters (`38:2::r:g:b`) are read like semicolons.
  const codes = params === '' ? [0] : params.split(/[;:]/).map(toCode);
  const next: { -readonly [K in keyof ITextStyle]: ITextStyle[K] } = {
    ...style
  };
  for (let i = 0; i < codes.length; i++) {
    const code = codes[i];
    if (code === 0) {
      Object.assign(next, DEFAULT_STYLE);
    } else if (code === 1) {
      next.bold = true;
    } else if (code === 2) {
      next.dim = true;
    } else if (code === 3) {
      next.italic = true;
    } else if (code === 4) {
      next.underline = true;
    } else if (code === 7) {
      next.inverse = true;
    } else if (code === 9) {
      next.strikethrough = true;
    } else if (code === 22) {
      next.bold = false;
      next.dim = false;
    } else if (code === 23) {
      next.italic = false;
    } else if (code === 24) {
      next.underline = false;
    } else if (code === 27) {
      next.inverse = false;
    } else if (code === 29) {
      next.strikethrough = false;
    } else if (code >= 30 && code <= 37) {
      next.fg = code - 30;
    } else if (code === 39) {
      next.fg = null;
    } else if (code >= 40 && code <= 47) {
      next.bg = code - 40;
    } else if (code === 49) {
      next.bg = null;
    } else if (code >= 90 && code <= 97) {
      next.fg = code - 90 + 8;
    } else if (code >= 100 && code <= 107) {
      next.bg = code - 100 + 8;
    } else if (code === 38 || code === 48) {
      const [color, used] = extendedColor(codes, i + 1);
      if (color !== undefined) {
        if (code === 38) {
          next.fg = color;
        } else {
          next.bg = color;
        }
      }
      i += used;
    }
  }
  return sameStyle(next, style) ? style : Object.freeze(next);
}

/** A piece of terminal output. */
export type AnsiToken =
  | { kind: 'text'; text: string }
  | { kind: 'control'; char: string }
  | { kind: 'csi'; params: string; final: string };

/**
 * Splits a stream of decoded terminal output into tokens.
 *
 * Chunks may end in the middle of an escape sequence: the unfinished part is
 * kept for the next `feed`, up to `MAX_PENDING` characters (a longer one is
 * malformed output and is dropped, so memory stays bounded).
 */
export class AnsiTokenizer {
  /** Tokens for `chunk`, joined to whatever the previous chunk left unfinished. */
  feed(chunk: string): AnsiToken[] {
    const s = this._pending + chunk;
    this._pending = '';
    const tokens: AnsiToken[] = [];
    let textStart = 0;
    let i = 0;
    while (i < s.length) {
      const c = s.charCodeAt(i);
      if ((c >= 0x20 && c !== 0x7f) || c === 0x09) {
        i++;
        continue;
      }
      if (i > textStart) {
        tokens.push({ kind: 'text', text: s.slice(textStart, i) });
      }
      if (c === 0x1b) {
        const end = escapeEnd(s, i);
        if (end < 0) {
          if (s.length - i <= MAX_PENDING) {
            this._pending = s.slice(i);
          }
          return tokens;
        }
        if (s[i + 1] === '[' && isFinalByte(s.charCodeAt(end - 1))) {
          tokens.push({
            kind: 'csi',
            params: s.slice(i + 2, end - 1),
            final: s[end - 1]
          });
        }
        i = end;
      } else {
        tokens.push({ kind: 'control', char: s[i] });
        i++;
      }
      textStart = i;
    }
    if (i > textStart) {
      tokens.push({ kind: 'text', text: s.slice(textStart, i) });
    }
    return tokens;
  }

  /** Forget any unfinished sequence (the stream jumped). */
  reset(): void {
    this._pending = '';
  }

  private _pending = '';
}

/** The longest unfinished escape sequence kept between chunks, in characters. */
export const MAX_PENDING = 256;

/**
 * The index just past the escape sequence starting at `s[start]` (an ESC),
 * or -1 when `s` ends before the sequence does.
 */
function escapeEnd(s: string, start: number): number {
  if (start + 1 >= s.length) {
    return -1;
  }
  const kind = s[start + 1];
  if (kind === '[') {
    let j = start + 2;
    while (j < s.length && isParameterByte(s.charCodeAt(j))) {
      j++;
    }
    if (j >= s.length) {
      return -1;
    }
    // A malformed CSI ends at the first byte that cannot belong to it; that
    // byte is kept as text.
    return isFinalByte(s.charCodeAt(j)) ? j + 1 : j;
  }
  if (kind === ']' || kind === 'P' || kind === '_' || kind === '^') {
    // String sequences (window titles, hyperlinks) end at BEL or ESC \.
    for (let j = start + 2; j < s.length; j++) {
      if (s[j] === '\x07') {
        return j + 1;
      }
      if (s[j] === '\x1b') {
        if (j + 1 >= s.length) {
          return -1;
        }
        if (s[j + 1] === '\\') {
          return j + 2;
        }
      }
    }
    return -1;
  }
  if (kind === '(' || kind === ')' || kind === '#' || kind === '%') {
    return start + 3 <= s.length ? start + 3 : -1;
  }
  const code = s.charCodeAt(start + 1);
  // Two-character sequences (ESC 7, ESC M, ...); a lone ESC is dropped.
  return code >= 0x30 && code <= 0x7e ? start + 2 : start + 1;
}

/** Parameter and intermediate bytes of a CSI sequence. */
function isParameterByte(code: number): boolean {
  return code >= 0x20 && code <= 0x3f;
}

function isFinalByte(code: number): boolean {
  return code >= 0x40 && code <= 0x7e;
}

function toCode(part: string): number {
  const value = parseInt(part, 10);
  return Number.isNaN(value) ? 0 : value;
}

/**
 * The colour of `38;5;N` / `38;2;R;G;B` starting at `codes[at]` (the 5 or 2),
 * and how many codes it used.
 */
function extendedColor(
  codes: number[],
  at: number
): [Color | undefined, number] {
  const mode = codes[at];
  if (mode === 5 && at + 1 < codes.length) {
    const index = codes[at + 1];
    return [index >= 0 && index <= 255 ? index : undefined, 2];
  }
  if (mode === 2 && at + 3 < codes.length) {
    const rgb = codes.slice(at + 1, at + 4).map(clampByte);
    const hex = rgb.map(v => v.toString(16).padStart(2, '0')).join('');
    return [`#${hex}`, 4];
  }
  return [undefined, codes.length - at];
}

function clampByte(value: number): number {
  return Math.max(0, Math.min(255, value));
}

/** The CSS colour of a 256-colour palette index from 16 up (xterm's palette). */
export function paletteColor(index: number): string {
  if (index >= 232) {
    const level = 8 + (index - 232) * 10;
    return `rgb(${level},${level},${level})`;
  }
  const cube = index - 16;
  const levels = [0, 95, 135, 175, 215, 255];
  const r = levels[Math.floor(cube / 36) % 6];
  const g = levels[Math.floor(cube / 6) % 6];
  const b = levels[cube % 6];
  return `rgb(${r},${g},${b})`;
}
