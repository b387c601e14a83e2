/**
 * Echo client: sends each argument (or each line of stdin) as a text message and prints what
 * comes back, then closes with 1000.
 *
 *   npx ts-node examples/echo-client.ts ws://127.0.0.1:8080 hello world
 *   printf 'a\nb\n' | npx ts-node examples/echo-client.ts ws://127.0.0.1:8080
 */
import * as readline from 'node:readline';
import { connect } from '../lib';

const url = process.argv[2] ?? 'ws://127.0.0.1:8080';
const words = process.argv.slice(3);

const ws = connect(url);
let expected = 0;
let inputDone = false;

function maybeClose(): void {
  if (inputDone && expected === 0) ws.close(1000, 'done');
}

ws.on('open', () => {
  if (words.length > 0) {
    for (const word of words) {
      expected++;
      ws.send(word);
    }
    inputDone = true;
    maybeClose();
    return;
  }
  const lines = readline.createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    expected++;
    ws.send(line);
  });
  lines.on('close', () => {
    inputDone = true;
    maybeClose();
  });
});

ws.on('message', (data: string | Buffer, isBinary: boolean) => {
  console.log(isBinary ? `<binary ${(data as Buffer).length} bytes>` : data);
  expected--;
  maybeClose();
});

ws.on('error', (err: Error) => {
  console.error(`error: ${err.message}`);
  process.exitCode = 1;
});

ws.on('close', (code: number) => {
  if (code !== 1000) process.exitCode = 1;
});
