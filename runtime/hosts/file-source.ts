// A ByteSource over a file on disk (Node): reads by offset through one file handle, so a
// multi-gigabyte GGUF file is never held in memory whole; readGguf() fetches its header and
// readTensorBytes() one tensor at a time.
import { open } from 'node:fs/promises';
import type { ByteSource } from '../gguf';

export interface FileSource extends ByteSource {
  close(): Promise<void>;
}

export async function openFileSource(path: string): Promise<FileSource> {
  const handle = await open(path, 'r');
  const { size } = await handle.stat();
  return {
    byteLength: size,
    async read(offset, length) {
      if (offset < 0 || length < 0 || offset + length > size) throw new RangeError(`${path}: bytes ${offset}..${offset + length} are outside the ${size}-byte file`);
      const out = new Uint8Array(length);
      for (let done = 0; done < length; ) {
        const { bytesRead } = await handle.read(out, done, length - done, offset + done);
        if (bytesRead === 0) throw new RangeError(`${path}: the file ended at byte ${offset + done} while reading (it shrank?)`);
        done += bytesRead;
      }
      return out;
    },
    close: () => handle.close(),
  };
}
