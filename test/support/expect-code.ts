// Asserts that a call throws (or a promise rejects with) a TidelogError of a given stable code.
import * as assert from 'uvu/assert';
import { isTidelogError } from '../../src/errors.ts';

export function expectCode(run: () => unknown, code: string): void {
  try {
    run();
  } catch (error) {
    assert.ok(isTidelogError(error), String(error));
    assert.is((error as { code: string }).code, code);
    return;
  }
  assert.unreachable(`expected ${code}`);
}

/** Asserts that `promise` rejects with a TidelogError of `code`. */
export async function expectRejection(promise: Promise<unknown>, code: string): Promise<void> {
  try {
    await promise;
  } catch (error) {
    assert.ok(isTidelogError(error), String(error));
    assert.is((error as { code: string }).code, code);
    return;
  }
  assert.unreachable(`expected a rejection with ${code}`);
}
