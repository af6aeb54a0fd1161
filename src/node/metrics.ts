// Prometheus metrics of one node, on a registry of its own (several nodes can share a process
// in tests), served on GET /metrics by the monitoring endpoint (monitor.ts).
// Hot-path counters are plain increments; gauges that mirror WAL state are read at scrape
// time (collect), so serving metrics costs nothing between scrapes.

import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { LatencyWindow } from './monitor.ts';

export interface ShardGaugeSource {
  shard: number;
  lastSeq: number;
  durableSeq: number;
  checkpointSeq: number;
  pendingEvents: number;
  sessions: number;
  entities: number;
  fsyncP50Us: number;
  fsyncP99Us: number;
  firstSeq: number;
  logBytes: number;
  snapshotSeq: number;
  snapshotBytes: number;
  snapshotsTaken: number;
  snapshotsInstalled: number;
  snapshotsFailed: number;
  retentionSegmentsDeleted: number;
  retentionBytesDeleted: number;
  /** 1 when the shard failed (its lane, or its open), else 0. */
  failed: number;
  /** Replication: committed seq (HWM), epoch, 1 when this replica serves as leader, and the largest follower lag it sees (leader only). */
  hwm: number;
  epoch: number;
  leader: number;
  followerLagEvents: number;
}

export class NodeMetrics {
  readonly registry = new Registry();
  readonly eventsAppended: Counter<'shard'>;
  readonly duplicatesSkipped: Counter<'shard'>;
  readonly requests: Counter<'endpoint' | 'outcome'>;
  readonly requestErrors: Counter<'endpoint' | 'code'>;
  readonly requestEvents: Histogram;
  readonly appendLatency: Histogram<'shard'>;
  /** Ack latencies of the monitor's current second (monitor.ts). */
  readonly ackWindow = new LatencyWindow();

  constructor(nodeId: string, shardSource: () => ShardGaugeSource[]) {
    this.registry.setDefaultLabels({ node: nodeId });
    const registers = [this.registry];
    this.eventsAppended = new Counter({
      name: 'tidelog_events_appended_total',
      help: 'Events made durable (content duplicates excluded)',
      labelNames: ['shard'],
      registers,
    });
    this.duplicatesSkipped = new Counter({
      name: 'tidelog_events_duplicate_total',
      help: 'Events answered with seq 0 by the content dedup window',
      labelNames: ['shard'],
      registers,
    });
    this.requests = new Counter({
      name: 'tidelog_requests_total',
      help: 'Requests answered, by endpoint and outcome (new, replayed, applied, ok)',
      labelNames: ['endpoint', 'outcome'],
      registers,
    });
    this.requestErrors = new Counter({
      name: 'tidelog_request_errors_total',
      help: 'Requests answered with an error, by stable error code',
      labelNames: ['endpoint', 'code'],
      registers,
    });
    this.requestEvents = new Histogram({
      name: 'tidelog_append_request_events',
      help: 'Events per append request (the batch size producers send)',
      buckets: [1, 10, 100, 500, 1000, 2000, 5000, 10_000, 65_536],
      registers,
    });
    this.appendLatency = new Histogram({
      name: 'tidelog_append_latency_seconds',
      help: 'Append request received → durable ack sent',
      labelNames: ['shard'],
      buckets: [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5],
      registers,
    });
    const shardGauge = (name: string, help: string, read: (source: ShardGaugeSource) => number): void => {
      new Gauge({
        name,
        help,
        labelNames: ['shard'],
        registers,
        collect() {
          for (const source of shardSource()) this.set({ shard: String(source.shard) }, read(source));
        },
      });
    };
    shardGauge('tidelog_shard_last_seq', 'Highest seq assigned', (s) => s.lastSeq);
    shardGauge('tidelog_shard_durable_seq', 'Highest seq durable (fdatasync done)', (s) => s.durableSeq);
    shardGauge('tidelog_shard_checkpoint_seq', 'Seq of the last checkpoint', (s) => s.checkpointSeq);
    shardGauge('tidelog_shard_queue_depth_events', 'Events accepted but not yet durable', (s) => s.pendingEvents);
    shardGauge('tidelog_shard_sessions', 'Producer sessions remembered', (s) => s.sessions);
    shardGauge('tidelog_shard_entities', 'Entities in the CRDT signal state', (s) => s.entities);
    shardGauge('tidelog_fsync_p50_microseconds', 'fdatasync latency p50 since start', (s) => s.fsyncP50Us);
    shardGauge('tidelog_fsync_p99_microseconds', 'fdatasync latency p99 since start', (s) => s.fsyncP99Us);
    shardGauge('tidelog_shard_first_seq', 'Oldest seq the log still holds (retention deletes before it)', (s) => s.firstSeq);
    shardGauge('tidelog_shard_log_bytes', 'Bytes of log segments on disk', (s) => s.logBytes);
    shardGauge('tidelog_shard_snapshot_seq', 'Seq of the newest state snapshot file', (s) => s.snapshotSeq);
    shardGauge('tidelog_shard_snapshot_bytes', 'Size of the newest state snapshot file', (s) => s.snapshotBytes);
    shardGauge('tidelog_shard_snapshots_taken', 'State snapshots written since start', (s) => s.snapshotsTaken);
    shardGauge('tidelog_shard_snapshots_installed', "Leader snapshots installed here since start (this replica was behind its leader's retention)", (s) => s.snapshotsInstalled);
    shardGauge('tidelog_shard_snapshots_failed', 'State snapshots abandoned since start (retried later)', (s) => s.snapshotsFailed);
    shardGauge('tidelog_retention_segments_deleted', 'Segments deleted by retention since start', (s) => s.retentionSegmentsDeleted);
    shardGauge('tidelog_retention_bytes_deleted', 'Bytes of segments deleted by retention since start', (s) => s.retentionBytesDeleted);
    shardGauge('tidelog_shard_hwm', 'Highest committed seq (durable on a quorum in a cluster)', (s) => s.hwm);
    shardGauge('tidelog_shard_epoch', 'Leader epoch this replica recorded', (s) => s.epoch);
    shardGauge('tidelog_shard_leader', '1 when this replica serves the shard as its leader', (s) => s.leader);
    shardGauge('tidelog_shard_follower_lag_events', 'Leader only: events the laggiest follower lacks of the HWM', (s) => s.followerLagEvents);
    shardGauge('tidelog_shard_failed', '1 when the shard is stopped by a failure (its lane, or damage found on open)', (s) => s.failed);
  }

  /** One append request answered after `seconds`: the histogram, and the monitor's window. */
  observeAppend(shard: number, seconds: number): void {
    this.appendLatency.observe({ shard: String(shard) }, seconds);
    this.ackWindow.record(seconds * 1000);
  }
}
