/**
 * The words of the log view that are its own: its tab's title and the
 * notice of earlier output it does not show. (How a job is described is
 * describe.ts's.)
 */
import { IJob } from './api';
import { formatSize, shorten } from './describe';

/** The most characters of a job's name a tab's title shows. */
export const TITLE_NAME_CHARS = 40;

/**
 * The tab's title: `Log: train (#12)` for a named job, `Log: job 12`
 * otherwise, so that two jobs of one name open two tabs a person can tell
 * apart. `job` is undefined while the job list has not arrived.
 */
export function logTabLabel(jobId: number, job: IJob | undefined): string {
  const name = job?.name;
  if (name) {
    return `Log: ${shorten(name, TITLE_NAME_CHARS)} (#${jobId})`;
  }
  return `Log: job ${jobId}`;
}

/** What the view leaves out of a log. */
export interface IOmitted {
  /** Bytes at the start of the log that were never read. */
  bytes: number;
  /** Whether the terminal dropped its oldest lines (its scrollback is full). */
  trimmed: boolean;
  /** The most lines the terminal keeps. */
  maxLines: number;
}

/**
 * The notice above the log, without its download link; '' when the view
 * shows the log from its first byte: `Earlier output not shown: 1.2 GiB.`
 */
export function omittedNotice(omitted: IOmitted): string {
  const lines = withThousands(omitted.maxLines);
  if (omitted.bytes > 0 && omitted.trimmed) {
    return `Earlier output not shown: ${formatSize(omitted.bytes)}, and all but the last ${lines} lines of the rest.`;
  }
  if (omitted.bytes > 0) {
    return `Earlier output not shown: ${formatSize(omitted.bytes)}.`;
  }
  if (omitted.trimmed) {
    return `Earlier output not shown: all but the last ${lines} lines.`;
  }
  return '';
}

/**
 * The line the terminal shows where the view skipped part of the log to
 * keep up with a fast writer: dim, on a line of its own.
 */
export function skippedLine(bytes: number): string {
  // CAN ends an escape sequence cut short by the skip; SGR 0 drops its styles.
  return `\x18\x1b[0m\r\n\x1b[2m[… ${formatSize(bytes)} skipped to keep up with the job …]\x1b[0m\r\n`;
}

/** `5000` as `5,000` (what `toLocaleString('en-US')` gives, without its cost). */
function withThousands(count: number): string {
  return String(Math.trunc(count)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}
