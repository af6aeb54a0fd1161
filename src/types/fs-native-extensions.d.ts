// Types for the two functions tidelog uses from fs-native-extensions (the package ships none).
declare module 'fs-native-extensions' {
  /** Non-blocking exclusive (or shared) lock; false when another description holds it. */
  export function tryLock(fd: number, offset?: number, length?: number, options?: { shared?: boolean }): boolean;
  export function unlock(fd: number, offset?: number, length?: number): void;
}
