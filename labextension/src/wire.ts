// The jobmagic REST API's JSON, as TypeScript types.
// Generated from jobmagic/store/wire.py by `python -m jobmagic.store.wire`;
// do not edit by hand (tests/test_wire.py checks that the two agree).

/** The version of the wire schema these types describe. */
export const WIRE_SCHEMA_VERSION = 1;

/** A job's lifecycle state. */
export type JobState =
  'queued' | 'running' | 'paused' | 'succeeded' | 'failed' | 'stopped';

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
  /** What runs it: "local" (a process on this machine). */
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
}

/** The answer of `GET jobs`: every job asked for, and the store's change version. */
export interface IJobList {
  /** The wire schema version of this answer. */
  schema_version: number;
  /** An opaque number that moves whenever a job changes; compare it for equality only. */
  version: number;
  /** The jobs, oldest first. */
  jobs: IJob[];
}
