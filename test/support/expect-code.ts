// Asserts that a synchronous call throws a TidelogError with a given stable code.
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
