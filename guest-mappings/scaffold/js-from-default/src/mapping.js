/**
 * The {{name}} mapping step ({{direction}}): runs AFTER the default mapping in the same
 * pipeline, so its input is the default mapping's output ({{output_type}} documents), and it
 * returns that {{output_type}} with the customer's changes. This is the way to customise the default
 * mapping without forking it (README.md shows the pipeline configuration).
 *
 * Start here: this example fills the CRM's custom columns from the step's config (every key
 * `column.<name>` sets the column `<name>` to its value) and leaves everything else as the
 * default mapping made it. Without such keys it changes nothing.
 *
 * Types: `cosell-types.d.ts` describes the documents (generated from the JSON Schemas in
 * `schema/`), `cosell-mapping.d.ts` the contract's imports. Editors that read `jsconfig.json`
 * check this file against them (`npm run check` does it on the command line).
 */

import { log } from 'cosell:mapping/log@0.1.0';
import { get, keys } from 'cosell:mapping/config@0.1.0';

/** Config keys with this prefix name a column to set. */
const COLUMN_PREFIX = 'column.';

/**
 * Maps one record. Return the output document as JSON text, or throw a mapping error:
 * `{ tag: 'reject', val }` for a bad record (not retried), `{ tag: 'skip', val }` for a record
 * that is deliberately not synced, `{ tag: 'fail', val }` for a transient problem (retried).
 *
 * @param {import('cosell:mapping/types@0.1.0').Context} ctx the call: direction, event, tenant,
 *   step name and version, and the timestamp to use instead of a clock
 * @param {string} input the {{output_type}} the default mapping made (JSON text)
 * @param {string | undefined} current the {{output_type}} as it is now on the destination side,
 *   if there is one (JSON text)
 * @returns {string} the {{output_type}} to write (JSON text)
 */
export function map(ctx, input, current) {
  try {
    return mapRecord(ctx, parse(input));
  } catch (error) {
    // The component has no stdout or stderr (it is built without WASI): an uncaught exception
    // would stop the call without a word. Log it, then let it stop the call: a bug fails the
    // same way on every retry, so the host parks the record until a new version is deployed.
    if (!isMappingError(error)) {
      log('error', `{{name}} threw: ${error instanceof Error ? error.stack || error : error}`);
    }
    throw error;
  }
}

/**
 * @param {import('cosell:mapping/types@0.1.0').Context} ctx
 * @param {import('./cosell-types').{{output_type}}} record
 * @returns {string}
 */
function mapRecord(ctx, record) {
  // Only what the default mapping writes is here: an update of an existing record may leave
  // out columns it does not own or that did not change (the name, for one).
  /** @type {string[]} */
  const set = [];
  for (const key of keys()) {
    const value = get(key);
    if (key.startsWith(COLUMN_PREFIX) && value !== undefined) {
      const column = key.slice(COLUMN_PREFIX.length);
      record[column] = value;
      set.push(column);
    }
  }
  log('info', `${ctx.event}: set ${set.length ? set.join(', ') : 'no columns'}`);
  return JSON.stringify(record);
}

/**
 * @param {string} input
 * @returns {import('./cosell-types').{{output_type}}}
 */
function parse(input) {
  try {
    return JSON.parse(input);
  } catch (error) {
    throw reject(`the input is not JSON: ${error}`);
  }
}

/**
 * @param {string} message
 * @returns {import('cosell:mapping/types@0.1.0').MappingError}
 */
function reject(message) {
  return { tag: 'reject', val: message };
}

/** @param {unknown} error */
function isMappingError(error) {
  return typeof error === 'object' && error !== null && 'tag' in error &&
    ['reject', 'skip', 'fail'].includes(/** @type {{ tag: string }} */ (error).tag);
}
