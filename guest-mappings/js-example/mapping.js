/**
 * An example mapping step written in JavaScript, built into a component with componentize-js.
 *
 * It shows the contract from another language: it reads the input JSON, rejects a record with
 * no name, adds the operator's configured owner team to every opportunity, and logs what it
 * did. It is also what the host's tests use to prove that a component from the JavaScript
 * toolchain (a SpiderMonkey engine in the component, importing no WASI at all) loads and runs
 * in the sandbox.
 *
 * The contract's imports are ES modules named after the WIT interfaces; the export `map` is the
 * exported function. An error is returned by throwing `{ tag: 'reject' | 'skip' | 'fail', val }`.
 */

import { log } from 'cosell:mapping/log@0.1.0';
import { get } from 'cosell:mapping/config@0.1.0';

/**
 * @param {{ direction: string, event: string, tenant: string, mappingName: string,
 *           mappingVersion: string, timestamp: string }} ctx
 * @param {string} input the input document (JSON text)
 * @param {string | undefined} current the destination's current record (JSON text), if any
 * @returns {string} the output document (JSON text)
 */
export function map(ctx, input, current) {
  try {
    return mapRecord(ctx, input);
  } catch (error) {
    // Built without stdio, the component has no stderr: an uncaught exception would trap
    // without a word. Say what it was through the log import first, then let it trap (a bug
    // fails the same way on every retry, so the host parks the record).
    if (!isMappingError(error)) {
      log('error', `javascript step threw: ${error && error.stack ? error.stack : error}`);
    }
    throw error;
  }
}

function mapRecord(ctx, input) {
  let record;
  try {
    record = JSON.parse(input);
  } catch (error) {
    throw reject(`input is not JSON: ${error.message}`);
  }
  if (record === null || typeof record !== 'object' || Array.isArray(record) || !record.name) {
    throw reject('the record has no name');
  }
  const team = get('owner-team') ?? 'unassigned';
  record.owningteam_name = team;
  record.mapped_by = { language: 'javascript', version: ctx.mappingVersion };
  log('info', `javascript step mapped ${JSON.stringify(record.name)} for team ${team}`);
  return JSON.stringify(record);
}

/** The `reject` case of the contract's `mapping-error`. */
function reject(message) {
  return { tag: 'reject', val: message };
}

function isMappingError(error) {
  return error !== null && typeof error === 'object' &&
    ['reject', 'skip', 'fail'].includes(error.tag) && typeof error.val === 'string';
}
