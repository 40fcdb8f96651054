// Types of the contract's imports (wit/mapping.wit, cosell:mapping@0.1.0) as componentize-js
// presents them to JavaScript: WIT names in camelCase, enums as their kebab-case strings,
// `option<T>` as `T | undefined`, a `variant` as `{ tag, val }`.

declare module 'cosell:mapping/types@0.1.0' {
  /** Which way a record is travelling. */
  export type Direction = 'partner-center-to-crm' | 'crm-to-partner-center';

  /** What the host tells a step about the call it is making. */
  export interface Context {
    direction: Direction;
    /** The event that triggered the sync, e.g. `referral-created`, `reconcile`, `sample`. */
    event: string;
    /** The tenant (partner organisation) the record belongs to. */
    tenant: string;
    /** The configured name of this step. */
    mappingName: string;
    /** The content hash of the running component (`sha256:` + hex). */
    mappingVersion: string;
    /** The time of the call (RFC 3339, UTC): use it instead of a clock. */
    timestamp: string;
  }

  /** Why a step did not produce an output document: throw one of these from `map`. */
  export type MappingError =
    | { tag: 'reject'; val: string }
    | { tag: 'skip'; val: string }
    | { tag: 'fail'; val: string };
}

declare module 'cosell:mapping/log@0.1.0' {
  export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';
  /** Writes one line to the host log, tagged with the step's name and version. */
  export function log(level: Level, message: string): void;
}

declare module 'cosell:mapping/config@0.1.0' {
  /** The value the operator set for `key` in the step's config, if any. */
  export function get(key: string): string | undefined;
  /** Every key the operator set, sorted. */
  export function keys(): string[];
}
