// The CRDT library's public surface: clocks, CRDTs, signal state, reconciliation, snapshots.
export { Hlc, systemClockNs, DEFAULT_MAX_OFFSET_MS, MAX_WALL_NS, type HlcOptions } from './hlc.ts';
export {
  HlcTimestamp,
  HLC_TIMESTAMP_BYTES,
  HLC_MSGPACK_EXTENSION_TYPE,
  registerHlcExtension,
  type HlcTimestampJson,
} from './hlc-timestamp.ts';
export { PNCounter, type PNCounterJson } from './pn-counter.ts';
export {
  LWWRegister,
  compareEncoded,
  trueWinsTies,
  type LWWRegisterJson,
  type LWWRegisterOptions,
  type TieBreak,
} from './lww-register.ts';
export {
  parseSignalSchema,
  loadSignalSchema,
  defaultSignalSchema,
  DEFAULT_SIGNAL_SCHEMA_PATH,
  DEFAULT_BUCKETS_PER_WINDOW,
  MIN_HALF_LIFE_SECONDS,
  MAX_HALF_LIFE_SECONDS,
  type SignalSchema,
  type SignalSchemaConfig,
  type SignalType,
  type ScoreSignal,
  type FlagSignal,
  type SignalWindow,
} from './signal-schema.ts';
export {
  CrdtSignalState,
  DEFAULT_MAX_PENDING_EVENTS,
  type EntityView,
  type SignalScore,
  type SignalStateJson,
  type SignalStateOptions,
  type ImageStream,
} from './signal-state.ts';
export { ImageLoader, loadStateImage } from './image-loader.ts';
export { IMAGE_MAGIC, IMAGE_VERSION, MIN_PIECE_BYTES } from './state-image.ts';
export {
  ReconciliationEngine,
  ReconcileSession,
  MIN_MESSAGE_BYTES,
  type ReconcileOptions,
  type ApplyResult,
} from './reconcile.ts';
export {
  encodePlan,
  decodePlan,
  splitPlan,
  MIN_PLAN_BYTES,
  RECONCILE_VERSION,
  type MergePlan,
  type PlanEntity,
  type PlanOrigin,
  type EntityDifference,
  type ReconcileStats,
} from './merge-plan.ts';
export { SNAPSHOT_MAGIC, SNAPSHOT_VERSION } from './snapshot-codec.ts';
export { EVENT_BYTES, encodeEvents, decodeEvent, type SignalEvent } from '../event.ts';
export { weightToMicros, MICROS_PER_UNIT, MAX_ABS_WEIGHT } from './weight-micros.ts';
