/**
 * What the main jobmagic plugin offers other plugins (the notifications
 * plugin among them): the job list and a way to show a job's log.
 */
import { Token } from '@lumino/coreutils';

import { JobsModel } from './model';

/** The jobmagic job list and its log panels. */
export interface IJobmagic {
  /** Every job in the store, kept current from the server. */
  readonly model: JobsModel;
  /** Open (or reveal) the log panel of job `id`. */
  openLog(id: number): void;
}

/** The token of the main plugin's `IJobmagic`. */
export const IJobmagic = new Token<IJobmagic>(
  'jobmagic:IJobmagic',
  'The jobmagic job list and its log panels.'
);
