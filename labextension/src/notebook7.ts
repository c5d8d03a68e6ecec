/**
 * Where a job's log panel opens: JupyterLab's main area or, in Jupyter
 * Notebook 7, a new tab of the tree page.
 *
 * Notebook 7's shell keeps one widget in its main area and ignores any other
 * added there. On the tree page (`/tree`) that widget is a tab panel with the
 * "Files" and "Running" tabs, which Notebook 7 provides as `INotebookTree`;
 * Notebook 7 opens its own Settings editor there as one more tab, and so does
 * this extension with a job's log. This keeps the log in the page whose
 * Running tab the user clicked, one tab away from it, with the page's live
 * job list (a new browser tab would need a page Notebook 7 does not have, and
 * its notebook and editor pages have no Running tab to click).
 *
 * `INotebookTree` is only provided on Notebook 7's tree page. Elsewhere it is
 * null and panels go to the shell's main area: JupyterLab's dock panel, as
 * before; on Notebook 7's notebook and editor pages, a main area that already
 * holds the document and ignores them (those pages list no jobs to click).
 *
 * The token must be the very object Notebook 7 provides, so package.json
 * shares `@jupyter-notebook/tree` as a singleton: Notebook and every
 * extension then load one copy, the highest version offered (normally
 * Notebook's own). It stays bundled (2 KB) as the copy offered where there is
 * no other: JupyterLab has none, and a shared package with no copy at all
 * fails the extension's whole load ("Shared module @jupyter-notebook/tree
 * doesn't exist in shared scope default").
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { INotebookTree } from '@jupyter-notebook/tree';
import { Widget } from '@lumino/widgets';

export { INotebookTree };

/** The part of the page where the extension opens its panels. */
export interface IMainArea {
  /** Add `panel` and make it the one shown. */
  add(panel: Widget): void;
  /** Show `panel`, added before. */
  activate(panel: Widget): void;
}

/**
 * The main area panels open in: Notebook 7's tree tabs when `tree` is given,
 * else the shell's main area (JupyterLab's dock panel).
 */
export function mainArea(
  app: JupyterFrontEnd,
  tree: INotebookTree | null
): IMainArea {
  if (tree) {
    return {
      add: panel => {
        tree.addWidget(panel);
        showTab(tree, panel);
      },
      activate: panel => showTab(tree, panel)
    };
  }
  return {
    add: panel => {
      app.shell.add(panel, 'main');
      app.shell.activateById(panel.id);
    },
    activate: panel => {
      app.shell.activateById(panel.id);
    }
  };
}

/** Make `panel` the tree's current tab and give it the focus. */
function showTab(tree: INotebookTree, panel: Widget): void {
  tree.currentWidget = panel;
  panel.activate();
}
