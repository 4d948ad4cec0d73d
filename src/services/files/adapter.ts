/** One entry of a share, as `files list` and `files stat` show it. */
export interface Entry {
  name: string;
  type: 'file' | 'directory' | 'symlink' | 'other';
  size: number;
  modified: Date;
  /** Unix permission bits, e.g. 0o644. */
  mode: number;
}

/**
 * What the files service needs from a share, local or remote. Paths are checked name components
 * (see paths.ts); each adapter also keeps the resolved location inside the share's root.
 */
export interface ShareAdapter {
  list(parts: string[]): Promise<Entry[]>;
  stat(parts: string[]): Promise<Entry>;
  /** Copies the file to the local file `target` (streamed, not held in memory); refused before reading when larger than maxBytes. */
  read(parts: string[], maxBytes: number, target: string): Promise<Entry>;
  /** Copies a local file in under a temporary name, then renames it; refuses an existing file unless overwrite. */
  write(parts: string[], source: string, overwrite: boolean): Promise<number>;
  /** Removes a file (never a directory). */
  remove(parts: string[]): Promise<void>;
  close(): Promise<void>;
}
