/**
 * Types for the two tables swarmboot takes from the `tftp` npm package
 * (gagle/node-tftp 0.1.2, untyped CommonJS). Only these are used: its
 * server and transfer engine are not (see server/tftp/server.ts for why).
 */
declare module 'tftp/lib/protocol/opcodes.js' {
  const opcodes: {
    readonly RRQ: number;
    readonly WRQ: number;
    readonly DATA: number;
    readonly ACK: number;
    readonly ERROR: number;
    readonly OACK: number;
  };
  export = opcodes;
}

declare module 'tftp/lib/protocol/errors.js' {
  interface TftpErrorEntry {
    readonly code: number;
    readonly name: string | null;
    readonly message: string;
  }
  const errors: {
    readonly ENOENT: TftpErrorEntry;
    readonly EACCESS: TftpErrorEntry;
    readonly ENOSPC: TftpErrorEntry;
    readonly EBADOP: TftpErrorEntry;
    readonly ETID: TftpErrorEntry;
    readonly EEXIST: TftpErrorEntry;
    readonly ENOUSER: TftpErrorEntry;
    readonly EDENY: TftpErrorEntry;
  };
  export = errors;
}
