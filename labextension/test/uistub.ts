/**
 * A stand-in for `@jupyterlab/ui-components`, which node cannot load (its ES
 * build imports directories). Importing this module first makes every
 * `fooIcon` the code under test imports an object `{ name: 'fooIcon' }`, the
 * same object each time, so a test can compare icons by identity.
 */
import Module from 'node:module';

const path = require.resolve('@jupyterlab/ui-components');
const icons = new Map<string, { name: string }>();
const stub = new Module(path);
stub.filename = path;
stub.loaded = true;
stub.exports = new Proxy(
  {},
  {
    get: (_target, name) => {
      if (typeof name !== 'string' || !name.endsWith('Icon')) {
        return undefined;
      }
      let icon = icons.get(name);
      if (icon === undefined) {
        icon = { name };
        icons.set(name, icon);
      }
      return icon;
    }
  }
);
require.cache[path] = stub;
