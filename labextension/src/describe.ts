/**
 * How a job is described to a person: its label, state, exit and runtime.
 */
import { IJob } from './wire';

/** The job's name, or its command when it has none. */
export function jobLabel(job: IJob): string {
  return job.name || job.command;
}

/**
 * The state in a word or two: `running`, `failed (exit code 1)`,
 * `stopped (killed by SIGTERM)`; the exit is the server's `exit_text`.
 */
export function describeState(job: IJob): string {
  const exit = job.exit_text;
  if (job.orphaned) {
    return `${job.state} (orphaned)`;
  }
  if ((job.state === 'failed' || job.state === 'stopped') && exit) {
    return `${job.state} (${exit})`;
  }
  return job.state;
}

/** The state in one word for narrow places: `orphaned` for a queued or running orphan. */
export function briefState(job: IJob): string {
  return job.orphaned ? 'orphaned' : job.state;
}

/**
 * A duration for people: `45.9s`, `3m04s`, `2h05m`, as the Python side writes
 * it (`tests/cases/runtime.json` holds the cases both run); '' when unknown.
 */
export function formatDuration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds) || seconds < 0) {
    return '';
  }
  if (seconds < 60) {
    return `${seconds.toFixed(1)}s`;
  }
  const s = Math.floor(seconds);
  const pad = (n: number): string => String(n).padStart(2, '0');
  if (s < 3600) {
    return `${Math.floor(s / 60)}m${pad(s % 60)}s`;
  }
  return `${Math.floor(s / 3600)}h${pad(Math.floor(s / 60) % 60)}m`;
}

/** A byte count for people: `812 B`, `4.2 KiB`, `1.3 MiB`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) {
    return `${bytes} B`;
  }
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** A multi-line description for tooltips. */
export function jobTooltip(job: IJob): string {
  const lines = [
    `Job ${job.id}: ${job.command}`,
    `State: ${describeState(job)}`
  ];
  if (job.error) {
    lines.push(`Error: ${job.error}`);
  }
  if (job.pid !== null) {
    lines.push(`PID: ${job.pid}`);
  }
  if (job.cwd) {
    lines.push(`Directory: ${job.cwd}`);
  }
  if (job.started_at) {
    lines.push(`Started: ${new Date(job.started_at * 1000).toLocaleString()}`);
  }
  if (job.ended_at) {
    lines.push(`Ended: ${new Date(job.ended_at * 1000).toLocaleString()}`);
  }
  if (job.owner) {
    lines.push(`Started by: ${job.owner}${job.orphaned ? ' (gone)' : ''}`);
  }
  return lines.join('\n');
}
