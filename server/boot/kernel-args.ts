/**
 * Kernel arguments reach an iPXE script line and a pxelinux `append` line.
 * Both are line-oriented and split on spaces, so one argument is one token:
 * no whitespace, no control characters, and nothing the script languages
 * would expand (iPXE expands ${...}; a stray quote or # changes the parse).
 */

/** Arguments swarmboot sets itself; a profile may not set (and so contradict) them. */
const RESERVED = ['initrd', 'flatcar.first_boot', 'coreos.first_boot', 'ignition.config.url', 'coreos.config.url', 'flatcar.config.url'];

/** Returns null when `arg` is acceptable, else a message saying why not. */
export function kernelArgProblem(arg: string): string | null {
  if (arg.length === 0) return 'empty kernel argument';
  if (arg.length > 1024) return 'kernel argument longer than 1024 characters';
  // eslint-disable-next-line no-control-regex
  if (/[\s\x00-\x1f\x7f]/.test(arg)) return `kernel argument ${JSON.stringify(arg)} contains whitespace or a control character (give one argument per list item)`;
  if (/["'`\\]/.test(arg)) return `kernel argument ${JSON.stringify(arg)} contains a quote or backslash, which would break the iPXE/pxelinux line`;
  if (arg.includes('|') || arg.includes('&')) return `kernel argument ${JSON.stringify(arg)} contains "|" or "&", which iPXE reads as command operators`;
  if (arg.includes('${') || arg.includes('#')) return `kernel argument ${JSON.stringify(arg)} contains "\${" or "#", which iPXE would expand or treat as a comment`;
  const key = arg.split('=', 1)[0] ?? '';
  if (RESERVED.includes(key)) return `kernel argument ${JSON.stringify(key)} is set by swarmboot; remove it (choose Ignition delivery with the "ignition" setting)`;
  return null;
}
