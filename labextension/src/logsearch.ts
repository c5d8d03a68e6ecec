/**
 * The log view's search box (Ctrl/Cmd-F), on xterm's search addon: it
 * searches the terminal's whole buffer, scrollback included, selects the
 * match and scrolls it into view. Enter goes to the next match, Shift+Enter
 * to the previous one, Escape closes the box.
 */
import { ISearchOptions, SearchAddon } from '@xterm/addon-search';
import { IDisposable } from '@lumino/disposable';

/** Options for a `LogSearchBox`. */
export interface ILogSearchBoxOptions {
  search: SearchAddon;
  /** How matches are marked (colours from the theme). */
  decorations: () => NonNullable<ISearchOptions['decorations']>;
  /** Called when the box closes (the view gives the terminal its focus back). */
  onClose: () => void;
}

/** A small search box over the log. */
export class LogSearchBox implements IDisposable {
  constructor(options: ILogSearchBoxOptions) {
    this._search = options.search;
    this._decorations = options.decorations;
    this._onClose = options.onClose;
    this.node.className = 'jp-JobLog-search';
    this.node.hidden = true;
    this.input.className = 'jp-JobLog-searchInput';
    this.input.type = 'search';
    this.input.placeholder = 'Find in log';
    this.input.setAttribute('aria-label', 'Find in log');
    this._count.className = 'jp-JobLog-searchCount';
    this._count.setAttribute('aria-live', 'polite');
    const previous = button('↑', 'Previous match (Shift+Enter)', () =>
      this.find(false)
    );
    const next = button('↓', 'Next match (Enter)', () => this.find(true));
    const close = button('×', 'Close (Escape)', () => this.close());
    this.node.append(this.input, this._count, previous, next, close);
    this.input.addEventListener('input', () => this._incremental());
    this.node.addEventListener('keydown', this._onKeyDown);
    this._results = this._search.onDidChangeResults(
      ({ resultIndex, resultCount }) => {
        this._count.textContent =
          resultCount === 0
            ? 'No results'
            : resultIndex < 0
              ? `${resultCount}+ matches`
              : `${resultIndex + 1} of ${resultCount}`;
      }
    );
  }

  readonly node = document.createElement('div');
  readonly input = document.createElement('input');

  get isOpen(): boolean {
    return !this.node.hidden;
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  /** Show the box with its text selected, so typing replaces it. */
  open(): void {
    this.node.hidden = false;
    this.input.focus();
    this.input.select();
  }

  /** Hide the box and the marks of its matches. */
  close(): void {
    if (this.node.hidden) {
      return;
    }
    this.node.hidden = true;
    this._count.textContent = '';
    this._search.clearDecorations();
    this._onClose();
  }

  /** Go to the next (or previous) match of the box's text; whether there is one. */
  find(forward: boolean): boolean {
    const term = this.input.value;
    if (!term) {
      this._search.clearDecorations();
      this._count.textContent = '';
      return false;
    }
    const options = { decorations: this._decorations() };
    return forward
      ? this._search.findNext(term, options)
      : this._search.findPrevious(term, options);
  }

  /** Mark the matches again (in new colours, after a change of theme). */
  refresh(): void {
    if (this.isOpen && this.input.value) {
      this._incremental();
    }
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    this._results.dispose();
    this.node.removeEventListener('keydown', this._onKeyDown);
  }

  /** As the text changes, the match grows from where it was (the addon's "incremental"). */
  private _incremental(): void {
    const term = this.input.value;
    if (!term) {
      this.find(true);
      return;
    }
    this._search.findNext(term, {
      incremental: true,
      decorations: this._decorations()
    });
  }

  private readonly _onKeyDown = (event: KeyboardEvent): void => {
    if (event.key === 'Enter') {
      this.find(!event.shiftKey);
    } else if (event.key === 'Escape') {
      this.close();
    } else {
      return;
    }
    event.preventDefault();
    event.stopPropagation();
  };

  private readonly _search: SearchAddon;
  private readonly _decorations: () => NonNullable<
    ISearchOptions['decorations']
  >;
  private readonly _onClose: () => void;
  private readonly _count = document.createElement('span');
  private readonly _results: { dispose(): void };
  private _disposed = false;
}

function button(
  text: string,
  title: string,
  onClick: () => void
): HTMLButtonElement {
  const node = document.createElement('button');
  node.type = 'button';
  node.className = 'jp-JobLog-searchButton';
  node.textContent = text;
  node.title = title;
  node.setAttribute('aria-label', title);
  node.addEventListener('click', onClick);
  return node;
}
