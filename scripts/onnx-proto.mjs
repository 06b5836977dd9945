// Writes compiler/frontends/onnx/onnx-proto.json: protobufjs's JSON descriptor of the
// official onnx.proto, as Debian's libonnx-dev installs it (/usr/include/onnx/onnx.proto),
// so the ONNX frontend decodes with protobufjs reflection and no hand-written decoder.
// The descriptor is committed (a compile needs no libonnx-dev); test/onnx-frontend.test.ts
// checks that it matches the installed onnx.proto.
//   node scripts/onnx-proto.mjs [path/to/onnx.proto] [--check]
import protobuf from 'protobufjs';
import { readFileSync, writeFileSync } from 'node:fs';

export const DEFAULT_PROTO = '/usr/include/onnx/onnx.proto';
export const DESCRIPTOR = new URL('../compiler/frontends/onnx/onnx-proto.json', import.meta.url);

export function renderDescriptor(protoFile = DEFAULT_PROTO) {
  const root = protobuf.loadSync(protoFile);
  return `${JSON.stringify(root.toJSON(), null, 1)}\n`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const check = args.includes('--check');
  const text = renderDescriptor(args.find((a) => !a.startsWith('--')) ?? DEFAULT_PROTO);
  if (check) {
    if (readFileSync(DESCRIPTOR, 'utf8') !== text) {
      console.error('compiler/frontends/onnx/onnx-proto.json differs from onnx.proto: run node scripts/onnx-proto.mjs');
      process.exit(1);
    }
  } else {
    writeFileSync(DESCRIPTOR, text);
  }
}
