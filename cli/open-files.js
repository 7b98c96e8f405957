// Kept in plain JavaScript: cli/crm.js needs it while the modules it loads fail for want of file descriptors.

/** Operating-system codes of a process (EMFILE) or a host (ENFILE) out of file descriptors. */
export const OPEN_FILE_LIMIT_CODES = ['EMFILE', 'ENFILE'];

/** What to do about it: `crm serve` loads about a thousand modules at start and needs a limit of 1024 or more. */
export const OPEN_FILE_LIMIT_ADVICE =
  'too many open files: raise the limit of open files to 1024 or more (`ulimit -n 1024`, or LimitNOFILE= in a systemd unit) and run it again';
