/**
 * How a job is described to a person: its label, state, exit, runtime,
 * limits and usage.
 */
import { DEFAULT_GROUP, IJob, IJobUsage, ILimits, isFinished } from './api';
import { isStopping } from './clock';

/** The job's name, or its command when it has none. */
export function jobLabel(job: IJob): string {
  return job.name || job.command;
}

/**
 * What a stop under way says of itself: `stopping (4s left)`, `stopping
 * (killing)` once the grace period is over, `stopping` when its length is
 * not known.
 *
 * @param grace - Seconds left of the stop's grace period (`graceLeft`).
 */
export function stoppingText(grace: number | null | undefined): string {
  if (grace === null || grace === undefined) {
    return 'stopping';
  }
  return grace > 0
    ? `stopping (${Math.ceil(grace)}s left)`
    : 'stopping (killing)';
}

/**
 * The state in a word or two: `running`, `failed (exit code 1)`,
 * `stopped (killed by SIGTERM)`, `stopping (4s left)`; the exit is the
 * server's `exit_text`.
 *
 * @param grace - Seconds left of a stop under way (`graceLeft`); a job whose
 *   stop was asked for reads as stopping whatever this is.
 */
export function describeState(job: IJob, grace?: number | null): string {
  if (isStopping(job)) {
    return job.orphaned
      ? `${stoppingText(grace)} (orphaned)`
      : stoppingText(grace);
  }
  const exit = job.exit_text;
  const active = job.state === 'running' || job.state === 'paused';
  // What the backend says of a running job: "waiting for the Ray cluster".
  const state =
    active && job.detail ? `${job.state} (${job.detail})` : job.state;
  if (job.orphaned) {
    return `${state} (orphaned)`;
  }
  if (state !== job.state) {
    return state;
  }
  if ((job.state === 'failed' || job.state === 'stopped') && exit) {
    return `${job.state} (${exit})`;
  }
  return job.state;
}

/**
 * The state in one word for narrow places: `stopping` while a stop is under
 * way, `orphaned` for a queued or running orphan.
 */
export function briefState(job: IJob): string {
  if (isStopping(job)) {
    return 'stopping';
  }
  return job.orphaned ? 'orphaned' : job.state;
}

/** The longest queue reason the sidebar's detail column shows uncut, in characters. */
export const REASON_WIDTH = 24;

/**
 * `text` cut to `limit` characters, an ellipsis marking the cut (as the
 * Python side's `shorten` does).
 */
export function shorten(text: string, limit: number): string {
  return text.length <= limit ? text : `${text.slice(0, limit - 1)}…`;
}

/**
 * What the sidebar says next to a job's label: why a queued job waits
 * (`waiting for job 7`, cut to `REASON_WIDTH`), a stop under way
 * (`stopping 4s left`), else the brief state and the runtime: `running
 * 3m04s`, `paused 12.0s`, `failed 1.2s`.
 *
 * @param runtime - Seconds it has run (a paused job's stays where the pause
 *   left it); null before it started.
 * @param grace - Seconds left of a stop under way (`graceLeft`).
 */
export function jobDetail(
  job: IJob,
  runtime: number | null,
  grace?: number | null
): string {
  if (isStopping(job)) {
    if (grace === null || grace === undefined) {
      return 'stopping';
    }
    return grace > 0
      ? `stopping ${Math.ceil(grace)}s left`
      : 'stopping: killing';
  }
  if (job.state === 'queued' && job.queue_reason && !job.orphaned) {
    return shorten(job.queue_reason, REASON_WIDTH);
  }
  if (job.state === 'running' && job.detail && !job.orphaned) {
    return shorten(job.detail, REASON_WIDTH);
  }
  const shown = formatDuration(runtime);
  return shown ? `${briefState(job)} ${shown}` : briefState(job);
}

/**
 * Whether the queue group `name` is paused, as far as its jobs tell: the
 * server gives its queued jobs the reason "group NAME is paused"
 * (`JobQueue.reasons`). A paused group without queued jobs cannot be told
 * from one whose jobs were paused one by one.
 */
export function isGroupPaused(name: string, jobs: readonly IJob[]): boolean {
  const reason = `group ${name} is paused`;
  return jobs.some(
    job => job.state === 'queued' && job.queue_reason === reason
  );
}

/**
 * A queue group as a person reads it: its name and how many of `jobs` (its
 * jobs the sidebar lists) are in each state, e.g. `gpu — 2 running, 3 queued`,
 * `gpu (paused) — 1 paused, 2 queued`, `default — 4 finished`.
 */
export function groupLabel(name: string, jobs: readonly IJob[]): string {
  const count = (wanted: (job: IJob) => boolean): number =>
    jobs.filter(wanted).length;
  const counts: [number, string][] = [
    [count(job => job.state === 'running'), 'running'],
    [count(job => job.state === 'paused'), 'paused'],
    [count(job => job.state === 'queued'), 'queued'],
    [count(job => isFinished(job.state)), 'finished']
  ];
  const parts = counts
    .filter(([n]) => n > 0)
    .map(([n, what]) => `${n} ${what}`);
  const title = isGroupPaused(name, jobs) ? `${name} (paused)` : name;
  return parts.length ? `${title} — ${parts.join(', ')}` : title;
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

/**
 * Whether a figure is there: null means unknown, and a server older than this
 * page (upgraded but not restarted) leaves newer fields out altogether.
 */
function known(value: number | null | undefined): value is number {
  return value !== null && value !== undefined;
}

const SIZE_UNITS: [string, number][] = [
  ['TiB', 2 ** 40],
  ['GiB', 2 ** 30],
  ['MiB', 2 ** 20],
  ['KiB', 2 ** 10]
];

/**
 * A size for people as the Python side's `format_size` writes it (powers of
 * 1024): `1.2 GiB`, `512 MiB`, `900 KiB`, `12 B`; one decimal below 10
 * unless whole, none above.
 *
 * @param bytes - The size in bytes.
 */
export function formatSize(bytes: number): string {
  for (const [unit, scale] of SIZE_UNITS) {
    if (bytes >= scale) {
      const value = bytes / scale;
      const digits = value < 10 && !Number.isInteger(value) ? 1 : 0;
      return `${toFixedHalfEven(value, digits)} ${unit}`;
    }
  }
  return `${Math.trunc(bytes)} B`;
}

/**
 * `value.toFixed(digits)`, except that a value exactly halfway rounds to
 * even as Python's formatting does (`toFixed` rounds it up): 1.25 is `1.2`.
 * `scaled` is exact for the values given here (a size over a power of two,
 * times ten; or times one), so what looks like a tie is one.
 */
function toFixedHalfEven(value: number, digits: number): string {
  const scaled = value * 10 ** digits;
  const floor = Math.floor(scaled);
  if (scaled - floor === 0.5 && floor % 2 === 0) {
    return (floor / 10 ** digits).toFixed(digits);
  }
  return value.toFixed(digits);
}

/**
 * A job's limits as the Python side's `Limits.describe` words them:
 * `memory 512 MiB, cpus 1.5, pids 100`; '' when it has none.
 */
export function describeLimits(limits: ILimits | undefined): string {
  const parts: string[] = [];
  if (known(limits?.memory)) {
    parts.push(`memory ${formatSize(limits.memory)}`);
  }
  if (known(limits?.cpus)) {
    // Six significant digits, no trailing zeros: Python's `:g`.
    parts.push(`cpus ${Number(limits.cpus.toPrecision(6))}`);
  }
  if (known(limits?.pids)) {
    parts.push(`pids ${limits.pids}`);
  }
  return parts.join(', ');
}

/**
 * What an ended job used in all, as `%job status` words it: `peak 1.2 GiB,
 * CPU time 12.3s`; '' when its backend could not tell.
 */
export function describeUsed(job: IJob): string {
  const parts: string[] = [];
  if (known(job.peak_memory)) {
    parts.push(`peak ${formatSize(job.peak_memory)}`);
  }
  if (known(job.cpu_seconds)) {
    parts.push(`CPU time ${formatDuration(job.cpu_seconds)}`);
  }
  return parts.join(', ');
}

/**
 * A running job's usage for a status line, as the Python side's `usage_text`
 * words it: `CPU 85% · 1.2 GiB`; '' when nothing is known.
 */
export function describeUsage(usage: IJobUsage): string {
  const parts: string[] = [];
  if (known(usage.cpu_percent)) {
    parts.push(`CPU ${toFixedHalfEven(usage.cpu_percent, 0)}%`);
  }
  if (known(usage.memory)) {
    parts.push(formatSize(usage.memory));
  }
  return parts.join(' · ');
}

/**
 * A multi-line description for tooltips.
 *
 * @param grace - Seconds left of a stop under way (`graceLeft`).
 */
export function jobTooltip(job: IJob, grace?: number | null): string {
  const lines = [
    `Job ${job.id}: ${job.command}`,
    `State: ${describeState(job, grace)}`
  ];
  if (job.notebook) {
    lines.push(`Notebook: ${job.notebook}`);
  }
  if (job.state === 'queued' && job.queue_reason) {
    lines.push(`Waiting: ${job.queue_reason}`);
  }
  if (job.error) {
    lines.push(`Error: ${job.error}`);
  }
  if (job.group !== DEFAULT_GROUP) {
    lines.push(`Group: ${job.group}`);
  }
  if (job.backend !== 'local') {
    lines.push(`Runs on: ${job.where}`);
  }
  if (job.pid !== null) {
    lines.push(`PID: ${job.pid}`);
  }
  if (job.cwd) {
    lines.push(`Directory: ${job.cwd}`);
  }
  const limits = describeLimits(job.limits);
  if (limits) {
    lines.push(`Limits: ${limits}`);
    if (job.containment) {
      lines.push(`Held by: ${job.containment}`);
    }
  }
  const used = isFinished(job.state) ? describeUsed(job) : '';
  if (used) {
    lines.push(`Used: ${used}`);
  }
  if (job.started_at) {
    lines.push(`Started: ${new Date(job.started_at * 1000).toLocaleString()}`);
  }
  if (job.paused_at) {
    lines.push(`Paused: ${new Date(job.paused_at * 1000).toLocaleString()}`);
  }
  if (job.ended_at) {
    lines.push(`Ended: ${new Date(job.ended_at * 1000).toLocaleString()}`);
  }
  if (job.restarted_from !== null) {
    lines.push(`Restart of: job ${job.restarted_from}`);
  }
  if (job.stop_requested_by) {
    lines.push(`Stop asked by: ${job.stop_requested_by}`);
  }
  if (job.owner) {
    // The notebook (above) is what people know; the kernel is for telling
    // two kernels of one notebook apart, and for whether it is still there.
    lines.push(`Kernel: ${job.owner}${job.orphaned ? ' (gone)' : ''}`);
  }
  return lines.join('\n');
}
