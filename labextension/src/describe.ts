/**
 * How a job is described to a person: its label, state, exit and runtime.
 */
import { IJob } from './api';

const SIGNAL_NAMES: Record<number, string> = {
  1: 'SIGHUP',
  2: 'SIGINT',
  3: 'SIGQUIT',
  6: 'SIGABRT',
  9: 'SIGKILL',
  11: 'SIGSEGV',
  13: 'SIGPIPE',
  14: 'SIGALRM',
  15: 'SIGTERM'
};

/** The job's name, or its command when it has none. */
export function jobLabel(job: IJob): string {
  return job.name || job.command;
}

/** What an exit code means: `exit 2`, or `killed by SIGTERM` for a negative one. */
export function describeExit(code: number | null): string | null {
  if (code === null || code === undefined) {
    return null;
  }
  if (code < 0) {
    return `killed by ${SIGNAL_NAMES[-code] ?? `signal ${-code}`}`;
  }
  return `exit ${code}`;
}

/** The state in a word or two: `running`, `failed (exit 1)`, `stopped (killed by SIGTERM)`. */
export function describeState(job: IJob): string {
  const exit = describeExit(job.exit_code);
  if (job.state === 'running' && job.orphaned) {
    return 'running (orphaned)';
  }
  if ((job.state === 'failed' || job.state === 'stopped') && exit) {
    return `${job.state} (${exit})`;
  }
  return job.state;
}

/** The state in one word for narrow places: `orphaned` for a running orphan. */
export function briefState(job: IJob): string {
  return job.state === 'running' && job.orphaned ? 'orphaned' : job.state;
}

/** A duration for people: `45s`, `3m 07s`, `2h 05m`, `3d 4h`. */
export function formatDuration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds) || seconds < 0) {
    return '';
  }
  const s = Math.floor(seconds);
  if (s < 60) {
    return `${s}s`;
  }
  const pad = (n: number): string => String(n).padStart(2, '0');
  if (s < 3600) {
    return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  }
  if (s < 86400) {
    return `${Math.floor(s / 3600)}h ${pad(Math.floor(s / 60) % 60)}m`;
  }
  return `${Math.floor(s / 86400)}d ${Math.floor(s / 3600) % 24}h`;
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
