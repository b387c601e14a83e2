/** Child processes in specs. */
import { ChildProcess } from 'node:child_process';

/** SIGKILL to a detached child's whole process group (the child and what it started). */
export function killGroup(child: ChildProcess): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    child.kill('SIGKILL');
  }
}
