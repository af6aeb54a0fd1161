// The argument rules both transports share (NATS core's): subjects, queue names, timeouts, matching.
// Invariant: a value that breaks a rule is refused with BAD_REQUEST before anything is routed
// or sent, so both transports refuse the same inputs with the same code.

import { TidelogError } from '../errors.ts';

/**
 * NATS subject rules: non-empty dot-separated tokens, no whitespace. `*` (one token) and `>`
 * (the rest, last token only) are wildcards when they are a whole token; published subjects
 * may hold none.
 */
function checkSubject(subject: string, mayHoldWildcards: boolean): void {
  const bad = (why: string): TidelogError => new TidelogError('BAD_REQUEST', `subject ${JSON.stringify(subject)}: ${why}`, { details: { subject } });
  if (typeof subject !== 'string' || subject.length === 0) throw bad('empty');
  let tokenStart = 0;
  for (let index = 0; index <= subject.length; index++) {
    const code = index < subject.length ? subject.charCodeAt(index) : 0x2e;
    if (code === 0x20 || code === 0x09 || code === 0x0a || code === 0x0d) throw bad('holds whitespace');
    if (code !== 0x2e) continue;
    const length = index - tokenStart;
    if (length === 0) throw bad('has an empty token');
    if (length === 1) {
      const token = subject.charCodeAt(tokenStart);
      if (token === 0x2a || token === 0x3e) {
        if (!mayHoldWildcards) throw bad('a published subject may not hold wildcards');
        if (token === 0x3e && index !== subject.length) throw bad("'>' must be the last token");
      }
    }
    tokenStart = index + 1;
  }
}

export function checkPublishSubject(subject: string): void {
  checkSubject(subject, false);
}

export function checkSubscribeSubject(subject: string): void {
  checkSubject(subject, true);
}

export function checkQueueName(queue: string): void {
  if (typeof queue !== 'string' || queue.length === 0 || /\s/.test(queue)) {
    throw new TidelogError('BAD_REQUEST', `queue name ${JSON.stringify(queue)} must be non-empty without whitespace`, { details: { queue } });
  }
}

export function checkTimeoutMs(timeoutMs: number): void {
  if (!Number.isFinite(timeoutMs) || timeoutMs < 1) {
    throw new TidelogError('BAD_REQUEST', `timeoutMs must be a finite number >= 1, got ${timeoutMs}`, { details: { timeoutMs } });
  }
}

/** Whether a subscription's pattern tokens match a published subject's tokens. */
export function subjectTokensMatch(pattern: readonly string[], subject: readonly string[]): boolean {
  for (let index = 0; index < pattern.length; index++) {
    const token = pattern[index];
    if (token === '>') return subject.length > index;
    if (index >= subject.length) return false;
    if (token !== '*' && token !== subject[index]) return false;
  }
  return pattern.length === subject.length;
}

export function subjectMatches(pattern: string, subject: string): boolean {
  return subjectTokensMatch(pattern.split('.'), subject.split('.'));
}
