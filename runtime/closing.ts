/**
 * What the CRM opened, closed in reverse order, each step by name: a shutdown that runs past its
 * deadline says which steps it was still waiting on (cli/shutdown.ts).
 */
export class ClosingSteps {
  private readonly steps: { name: string; close: () => Promise<void> }[] = [];
  private current: string | undefined;
  private closing: Promise<void> | undefined;

  /** A step closed before every step added earlier. */
  add(name: string, close: () => Promise<void>): void {
    this.steps.push({ name, close });
  }

  /**
   * Closes every step, the last added first; a step that fails does not keep the others open. Calls
   * at once share one pass; a call after it closes what was added since.
   */
  close(): Promise<void> {
    this.closing ??= this.closeAll().finally(() => (this.closing = undefined));
    return this.closing;
  }

  /** The steps not closed yet: the one closing now first, then those waiting their turn. */
  pending(): string[] {
    return [...(this.current === undefined ? [] : [this.current]), ...this.steps.map((step) => step.name).reverse()];
  }

  private async closeAll(): Promise<void> {
    for (let step = this.steps.pop(); step; step = this.steps.pop()) {
      this.current = step.name;
      await step.close().catch(() => undefined);
    }
    this.current = undefined;
  }
}
