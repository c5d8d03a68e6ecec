// The jobmagic REST API's JSON, as TypeScript types.
// Generated from jobmagic/store/wire.py by `python -m jobmagic.store.wire`;
// do not edit by hand (tests/test_wire.py checks that the two agree).

/** The version of the wire schema these types describe. */
export const WIRE_SCHEMA_VERSION = 1;

/** A job's lifecycle state. */
export type JobState =
  'queued' | 'running' | 'paused' | 'succeeded' | 'failed' | 'stopped';

/** A job's resource limits; null means no limit of that kind. */
export interface ILimits {
  /** Bytes of memory its processes may use together. */
  memory: number | null;
  /** How many CPUs' worth of time its processes may use together. */
  cpus: number | null;
  /** How many processes (and threads) it may have at once. */
  pids: number | null;
}

/** One job as the API sends it. Times are epoch seconds. */
export interface IJob {
  /** The job's number, unique in its store. */
  id: number;
  /** Its alias (unique among queued and running jobs), if it has one. */
  name: string | null;
  /** The shell command line it runs. */
  command: string;
  /** Its working directory; null means its kernel's. */
  cwd: string | null;
  /** Where it is in its life. */
  state: JobState;
  /** Popen-style: negative N means killed by signal N; null while it runs or when unknown. */
  exit_code: number | null;
  /** The exit code for people: "exit code 3", "killed by SIGKILL"; null when there is none. */
  exit_text: string | null;
  /** One line a person can act on when it failed or was stopped, else null. */
  error: string | null;
  /** The process id of its process group leader, where its backend has one. */
  pid: number | null;
  /** What runs it: "local" (a process on this machine) or "ray" (a job on a Ray cluster). */
  backend: string;
  /** When it was submitted. */
  created_at: number;
  /** When its process started; null while queued. */
  started_at: number | null;
  /** When it ended; null while queued or running. */
  ended_at: number | null;
  /** Seconds it has run (paused time left out) when the answer was made; null before it started. */
  runtime: number | null;
  /** When the pause under way began; null unless it is paused. */
  paused_at: number | null;
  /** Queued or running, but the kernel that started it is gone and nobody adopted it. */
  orphaned: boolean;
  /** The kernel that owns it, as "host:pid". */
  owner: string | null;
  /** It keeps running when its kernel shuts down or restarts. */
  detached: boolean;
  /** Who asked it to stop ("kernel", "ui", "timeout", "cli"), if anyone did. */
  stop_requested_by: string | null;
  /** The queue group it waits and runs in ("default" unless named). */
  group: string;
  /** Its priority in its group: higher starts first. */
  priority: number;
  /** Ids of the jobs that must succeed before it starts. */
  after: number[];
  /** Why it has not started yet ("waiting for job 7", "2nd in group gpu (2/2 running)"). */
  queue_reason: string | null;
  /** The job this one is a restart of, if any. */
  restarted_from: number | null;
  /** How many devices it takes from the GPU pool while it runs. */
  gpus: number;
  /** Units it takes from named pools while it runs ({"license": 1}). */
  resources: Record<string, number>;
  /** The GPU devices it holds (CUDA_VISIBLE_DEVICES). */
  devices: string[];
  /** The resource limits it was started with. */
  limits: ILimits;
  /** What holds it to its limits: "cgroup v1", "cgroup v2" or "none", then any "; best effort: ..." notes; null before it started or when its backend says nothing. */
  containment: string | null;
  /** The most bytes of memory it used at once, once it has ended; null before, or when unknown. */
  peak_memory: number | null;
  /** CPU seconds it used in all (user plus system), once it has ended; null before, or when unknown. */
  cpu_seconds: number | null;
  /** The cluster it was submitted to (Ray: "http://HOST:8265"); null for a local job. */
  address: string | null;
  /** Where it runs, as people read it: "local", "ray http://HOST:8265", with the node once known: "ray http://HOST:8265 (node 10.0.0.7)". */
  where: string;
  /** What its backend says of it while it runs: "waiting for the Ray cluster", "lost contact with the Ray cluster at ..."; null: nothing. */
  detail: string | null;
  /** The notebook whose kernel started it (its path, as Jupyter names the kernel's session); null when not started from a notebook, or not known. */
  notebook: string | null;
  /** The file its output goes to, on the server's machine; null before it has one. */
  log_path: string | null;
  /** While a stop is under way: seconds, when the answer was made, until what is left of it is killed (0 once that time has passed); null when no stop is under way or the stopper did not say. */
  stop_grace_left: number | null;
}

/** The answer of `GET jobs/{id}/usage`: live while it runs, else what it used in all. */
export interface IJobUsage {
  /** Bytes of memory it uses now; null once it has ended, or when unknown. */
  memory: number | null;
  /** The most bytes it has used at once; null when its backend cannot tell. */
  peak_memory: number | null;
  /** CPU seconds it has used so far; null when unknown. */
  cpu_seconds: number | null;
  /** Its CPU use since the previous reading (or its start), 100 per busy core; null once it has ended, or when unknown. */
  cpu_percent: number | null;
  /** Whether the figures are live (it is running or paused), not what it used in all. */
  running: boolean;
}

/** The answer of `GET jobs`: the jobs asked for, and the store's change version. */
export interface IJobList {
  /** The wire schema version of this answer. */
  schema_version: number;
  /** The store's revision when read: every change up to it is in this answer. */
  version: number;
  /** The store's generation: a revision means something only with the same store. */
  store: string;
  /** With `?since=`: the revision the changes are counted from. */
  since?: number;
  /** With `?since=` that could not be answered with changes: `jobs` is the whole list. */
  full?: boolean;
  /** How many jobs match the `state` filter (before `limit` and `offset`). */
  total: number;
  /** How many jobs the store has in each state. */
  counts: Record<JobState, number>;
  /** With `?since=`: the ids of the jobs removed since, ascending. */
  removed?: number[];
  /** The jobs, oldest first (newest first with `?order=newest`). */
  jobs: IJob[];
}

/** The `$id` of the jupyter_events schema of job-change events. */
export const JOB_CHANGES_SCHEMA_ID = 'https://events.jobmagic.dev/job-changes';

/** A job-change event (schema `JOB_CHANGES_SCHEMA_ID`), coalesced per server pass. */
export interface IJobChanges {
  /** The store's revision after these changes. */
  version: number;
  /** The revision of the server's previous event: a client at another has missed some. */
  previous: number;
  /** The store's generation. */
  store: string;
  /** Too many changes to send: `jobs` is empty, ask `GET jobs?since=`. */
  reload: boolean;
  /** The jobs changed or created since `previous`. */
  jobs: IJob[];
  /** The ids of the jobs removed since `previous`. */
  removed: number[];
  /** How many jobs the store has in each state. */
  counts: Record<JobState, number>;
}
