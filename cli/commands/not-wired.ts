/** Raised by a subcommand whose engine piece has not landed in this build yet. */
export const notWired = (what: string): never => {
  throw new Error(`${what} is not wired in this build yet.`);
};
