/**
 * The {{name}} mapping step ({{direction}}): maps {{input_type}} documents to {{output_type}}
 * documents.
 *
 * Built into a WebAssembly component by `./build.sh` (componentize-js); the host calls `map`
 * once per record. Start here: this example keeps the record's name (trimmed, with an optional
 * prefix from the step's config), rejects a record without one, and logs what it did.
 *
 * Types: `cosell-types.d.ts` describes the documents (generated from the JSON Schemas in
 * `schema/`), `cosell-mapping.d.ts` the contract's imports. Editors that read `jsconfig.json`
 * check this file against them (`npm run check` does it on the command line).
 */

import { log } from 'cosell:mapping/log@0.1.0';
import { get } from 'cosell:mapping/config@0.1.0';

/**
 * Maps one record. Return the output document as JSON text, or throw a mapping error:
 * `{ tag: 'reject', val }` for a bad record (not retried), `{ tag: 'skip', val }` for a record
 * that is deliberately not synced, `{ tag: 'fail', val }` for a transient problem (retried).
 *
 * @param {import('cosell:mapping/types@0.1.0').Context} ctx the call: direction, event, tenant,
 *   step name and version, and the timestamp to use instead of a clock
 * @param {string} input the {{input_type}} (JSON text)
 * @param {string | undefined} current the {{output_type}} as it is now on the destination side,
 *   if there is one (JSON text)
 * @returns {string} the {{output_type}} (JSON text)
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
 * @param {import('./cosell-types').{{input_type}}} record
 * @returns {string}
 */
function mapRecord(ctx, record) {
  const name = typeof record.name === 'string' ? record.name.trim() : '';
  if (!name) {
    throw reject('the record has no name');
  }
  const prefix = get('name-prefix') ?? '';

  /** @type {import('./cosell-types').{{output_type}}} */
  const output = { name: prefix + name };

  log('info', `${ctx.event}: mapped ${JSON.stringify(name)}`);
  return JSON.stringify(output);
}

/**
 * @param {string} input
 * @returns {import('./cosell-types').{{input_type}}}
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
