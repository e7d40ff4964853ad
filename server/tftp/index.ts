export { createTftpServer, DEFAULTS as TFTP_DEFAULTS } from './server.js';
export type { TftpServer, TftpServerOptions, TftpStats, TftpTransferEvent, GeneratedFiles, Remote } from './server.js';
export { checkTftpPath } from './paths.js';
