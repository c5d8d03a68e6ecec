/**
 * Room for the Jobs section in JupyterLab's Running sidebar.
 *
 * The sidebar is an accordion that gives each of its sections an equal
 * share: with JupyterLab's seven sections that is about four rows each, so
 * the Jobs section, usually the one with the most rows, shows a few jobs and
 * scrolls. It gets a larger share instead, once, when the page loads; the
 * user's own resizing afterwards is left alone.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { AccordionPanel } from '@lumino/widgets';

/** The id of JupyterLab's Running sidebar. */
export const RUNNING_SIDEBAR_ID = 'jp-running-sessions';

/** The Jobs section's share of the sidebar, against 1 for each other section. */
export const JOBS_SECTION_WEIGHT = 4;

/**
 * Give the section titled `name` of the Running sidebar `JOBS_SECTION_WEIGHT`
 * times the share of each other section. Returns whether it found the
 * section (Notebook 7 and other shells have no such sidebar).
 */
export function giveJobsSectionRoom(
  app: JupyterFrontEnd,
  name: string
): boolean {
  const sidebar = Array.from(app.shell.widgets('left')).find(
    widget => widget.id === RUNNING_SIDEBAR_ID
  );
  const accordion = (sidebar as { content?: unknown } | undefined)?.content;
  if (!(accordion instanceof AccordionPanel)) {
    return false;
  }
  const index = accordion.widgets.findIndex(
    section => section.title.label === name
  );
  if (index < 0) {
    return false;
  }
  const sizes = accordion.widgets.map((_, i) =>
    i === index ? JOBS_SECTION_WEIGHT : 1
  );
  const total = sizes.reduce((sum, size) => sum + size, 0);
  accordion.setRelativeSizes(sizes.map(size => size / total));
  return true;
}
