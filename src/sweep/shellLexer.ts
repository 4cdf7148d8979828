/**
 * A small POSIX sh lexer that says, for each placeholder of a command template, how the shell
 * will read the text put there — so the renderer can quote a value to arrive byte-exact as (part
 * of) one word, or the config can be refused where no quoting is safe.
 *
 * Safe places: an unquoted word (the value is single-quoted), inside '…' (each ' closes,
 * escapes and reopens), inside "…" (\ " $ ` are backslash-escaped), including either of these
 * inside `$(…)`. Refused: right after a backslash (it would escape the quoting's first
 * character), in a `#` comment (a newline in the value would end it), in a here-document's body
 * or delimiter (a line of the value could end it), inside `$'…'`, backticks, `${…}` and `$((…))`
 * (each re-reads the text by its own rules), and anywhere after a construct this lexer does not
 * follow with certainty (a `case` inside `$(…)`, quotes inside `${…}`).
 */

/** Where a placeholder sits in a shell command: outside quotes, inside '…' or inside "…". */
export type QuoteContext = "none" | "single" | "double";

/** What the shell does with the text at one placeholder: a quoting context, or why it is unsafe. */
export type PlaceholderVerdict = { context: QuoteContext } | { problem: string };

export interface ShellScan {
  /** One verdict per MARK in the scanned text, in order. */
  verdicts: PlaceholderVerdict[];
  /** The outermost quote or substitution left open at the end, with its index; null if none. */
  unclosed: { opener: string; index: number } | null;
}

/** Stands for a placeholder in the text given to `scanShell` (a NUL never reaches a shell). */
export const MARK = "\0";

type FrameKind = "single" | "double" | "ansi" | "backtick" | "param" | "arith" | "cmdsub";
interface Frame {
  kind: FrameKind;
  index: number;
  /** Open parentheses inside a `$(…)` or `$((…))`. */
  depth: number;
}

const OPENER: Record<FrameKind, string> = {
  single: "'",
  double: '"',
  ansi: "$'",
  backtick: "`",
  param: "${",
  arith: "$((",
  cmdsub: "$(",
};

/** Frames whose text the shell reads again by rules of its own: no placeholder inside them. */
const REREAD: Partial<Record<FrameKind, string>> = {
  ansi: "inside $'…', where backslash escapes are decoded",
  backtick: "inside backticks `…`, whose text the shell parses again (use $(…) instead)",
  // biome-ignore lint/suspicious/noTemplateCurlyInString: shell syntax, not a JS template
  param: "inside ${…}, whose text the shell expands by pattern rules",
  arith: "inside $((…)), which evaluates its text as arithmetic",
};

const WORD_BREAK = /[ \t\n;&|<>()]/;

/** Scans a command whose placeholders are replaced by MARK. */
export function scanShell(text: string): ShellScan {
  return new Scanner(text).scan();
}

/**
 * The lexer's state as it reads a command left to right: one method per quoting context, each
 * reading the character at `i` (and moving `i` past what else it consumed).
 */
class Scanner {
  private readonly verdicts: PlaceholderVerdict[] = [];
  private readonly stack: Frame[] = [];
  private readonly heredocs: Array<{ delimiter: string; stripTabs: boolean }> = [];
  /** The construct after which no placeholder is placed with certainty; null while none. */
  private uncertain: string | null = null;
  /** Whether the character at `i` starts a word (where `#` starts a comment, `case` a statement). */
  private wordStart = true;
  private i = 0;

  constructor(private readonly text: string) {}

  scan(): ShellScan {
    const { text } = this;
    for (this.i = 0; this.i < text.length; this.i++) {
      const char = text[this.i] as string;
      const top = this.stack[this.stack.length - 1];
      const kind = top?.kind ?? "none";
      if (kind === "single") this.singleQuoted(char);
      else if (kind === "ansi" || kind === "backtick") this.reread(char, kind);
      else if (char === "\\") this.backslash(kind);
      else if (kind === "double") this.doubleQuoted(char);
      else if (kind === "param") this.param(char);
      else if (kind === "arith") this.arith(char, top as Frame);
      else this.unquoted(char, top);
    }
    const outer = this.stack[0];
    return {
      verdicts: this.verdicts,
      unclosed: outer ? { opener: OPENER[outer.kind], index: outer.index } : null,
    };
  }

  private refuse(problem: string): void {
    this.verdicts.push({ problem });
  }

  private place(context: QuoteContext): void {
    const reread = this.stack.map((frame) => REREAD[frame.kind]).find((why) => why !== undefined);
    if (this.uncertain !== null)
      this.refuse(`after ${this.uncertain}, which labsweep cannot quote around with certainty`);
    else if (reread !== undefined) this.refuse(reread);
    else this.verdicts.push({ context });
  }

  private push(kind: FrameKind, index: number): void {
    this.stack.push({ kind, index, depth: 0 });
  }

  /** After a `$`: a substitution it opens, if any. */
  private dollar(): void {
    this.i = dollar(this.text, this.i, (kind, index) => this.push(kind, index));
  }

  /** Inside '…': only ' ends it. */
  private singleQuoted(char: string): void {
    if (char === "'") this.stack.pop();
    else if (char === MARK) this.place("single");
  }

  /** Inside $'…' or backticks: text the shell reads again, so every placeholder is refused. */
  private reread(char: string, kind: "ansi" | "backtick"): void {
    if (char === MARK) this.place("none");
    else if (char === "\\") {
      if (this.text[this.i + 1] === MARK) this.place("none");
      this.i++;
    } else if (char === (kind === "ansi" ? "'" : "`")) this.stack.pop();
  }

  /** A backslash outside '…', $'…' and backticks. */
  private backslash(kind: FrameKind | "none"): void {
    // A backslash escapes the next character (in "…" only \ " $ ` and newline, but a
    // placeholder after it is refused either way: its quoting's first character would go).
    if (this.text[this.i + 1] === MARK) {
      this.refuse("right after a backslash, which would escape the first character of its quoting");
    }
    this.i++;
    this.wordStart = false;
    // biome-ignore lint/suspicious/noTemplateCurlyInString: shell syntax, not a JS template
    if (kind === "param") this.uncertain ??= "a backslash inside ${…}";
  }

  /** Inside "…": substitutions still open within it. */
  private doubleQuoted(char: string): void {
    if (char === '"') this.stack.pop();
    else if (char === MARK) this.place("double");
    else if (char === "`") this.push("backtick", this.i);
    else if (char === "$") this.dollar();
  }

  /** Inside ${…}. */
  private param(char: string): void {
    if (char === "}") this.stack.pop();
    else if (char === MARK) this.place("none");
    else if (char === "'" || char === '"' || char === "`") {
      // Whether quotes inside ${…} quote depends on the shell and on the quotes around it.
      // biome-ignore lint/suspicious/noTemplateCurlyInString: shell syntax, not a JS template
      this.uncertain ??= "quotes inside ${…}";
    } else if (char === "$") this.dollar();
  }

  /** Inside $((…)), counting parentheses. */
  private arith(char: string, frame: Frame): void {
    if (char === MARK) this.place("none");
    else if (char === "(") frame.depth++;
    else if (char === ")") {
      if (frame.depth > 0) frame.depth--;
      else {
        this.stack.pop();
        if (this.text[this.i + 1] === ")") this.i++;
      }
    } else if (char === "$") this.dollar();
  }

  /** Unquoted text: the top level, or inside $(…). */
  private unquoted(char: string, top: Frame | undefined): void {
    const { text } = this;
    const inCmdsub = top?.kind === "cmdsub";
    if (char === MARK) {
      this.place("none");
      this.wordStart = false;
    } else if (char === "'" || char === '"' || char === "`") {
      this.push(char === "'" ? "single" : char === '"' ? "double" : "backtick", this.i);
      this.wordStart = false;
    } else if (char === "$") {
      if (text[this.i + 1] === "'") {
        this.push("ansi", this.i);
        this.i++;
      } else this.dollar();
      // Right inside a new $( the next word starts a command (`case` is looked for there).
      const opened = this.stack[this.stack.length - 1];
      this.wordStart = opened?.kind === "cmdsub" && opened !== top;
    } else if (char === "#" && this.wordStart) this.comment();
    else if (char === "<" && text[this.i + 1] === "<" && text[this.i + 2] !== "<") this.heredocStart();
    else if (char === "\n" && this.heredocs.length > 0) {
      this.i = skipHeredocs(text, this.i + 1, this.heredocs.splice(0), (problem) => this.refuse(problem)) - 1;
      this.wordStart = true;
    } else if ((char === "(" || char === ")") && inCmdsub) this.cmdsubParen(char, top as Frame);
    else {
      if (this.wordStart && inCmdsub && /^case[ \t\n]/.test(text.slice(this.i, this.i + 5)))
        this.uncertain ??= "a case statement inside $(…) (its patterns end in unmatched parentheses)";
      this.wordStart = WORD_BREAK.test(char);
    }
  }

  /** A `#` comment, to the end of its line. */
  private comment(): void {
    const { text } = this;
    while (this.i + 1 < text.length && text[this.i + 1] !== "\n") {
      this.i++;
      if (text[this.i] === MARK) this.refuse("in a # comment, which a newline in the value would end");
    }
  }

  /** `<<` or `<<-` and its delimiter; the body is skipped at the end of the line. */
  private heredocStart(): void {
    const stripTabs = this.text[this.i + 2] === "-";
    const read = readDelimiter(this.text, this.i + (stripTabs ? 3 : 2));
    if (read.marks > 0) for (let n = 0; n < read.marks; n++) this.refuse("in a here-document's delimiter");
    this.heredocs.push({ delimiter: read.delimiter, stripTabs });
    this.i = read.end - 1;
    this.wordStart = false;
  }

  /** A parenthesis inside $(…): nested ones are counted, the last closes it. */
  private cmdsubParen(char: "(" | ")", frame: Frame): void {
    if (char === "(") {
      frame.depth++;
      this.wordStart = true;
    } else if (frame.depth > 0) {
      frame.depth--;
      this.wordStart = true;
    } else {
      this.stack.pop();
      this.wordStart = false;
    }
  }
}

/** After a `$` at `i`: opens `$(`, `$((` or `${`; returns the index of the last character used. */
function dollar(text: string, i: number, push: (kind: FrameKind, index: number) => void): number {
  if (text[i + 1] === "(" && text[i + 2] === "(") {
    push("arith", i);
    return i + 2;
  }
  if (text[i + 1] === "(") {
    push("cmdsub", i);
    return i + 1;
  }
  if (text[i + 1] === "{") {
    push("param", i);
    return i + 1;
  }
  return i;
}

/** Reads a here-document's delimiter word from `start`: its quotes removed, and how many MARKs it holds. */
function readDelimiter(text: string, start: number): { delimiter: string; end: number; marks: number } {
  let i = start;
  while (text[i] === " " || text[i] === "\t") i++;
  let delimiter = "";
  let marks = 0;
  let quote: string | null = null;
  for (; i < text.length; i++) {
    const char = text[i] as string;
    if (char === MARK) marks++;
    if (quote) {
      if (char === quote) quote = null;
      else delimiter += char;
    } else if (char === "'" || char === '"') quote = char;
    else if (char === "\\") {
      const next = text[++i] ?? "";
      if (next === MARK) marks++;
      delimiter += next;
    } else if (WORD_BREAK.test(char)) break;
    else delimiter += char;
  }
  return { delimiter, end: i, marks };
}

/** Skips the bodies of the pending here-documents from `start` (a line start); returns where the shell goes on. */
function skipHeredocs(
  text: string,
  start: number,
  pending: Array<{ delimiter: string; stripTabs: boolean }>,
  refuse: (problem: string) => void,
): number {
  let i = start;
  for (const heredoc of pending) {
    while (i < text.length) {
      const newline = text.indexOf("\n", i);
      const end = newline < 0 ? text.length : newline;
      const line = text.slice(i, end);
      i = newline < 0 ? text.length : end + 1;
      const bare = heredoc.stripTabs ? line.replace(/^\t+/, "") : line;
      if (bare === heredoc.delimiter) break;
      for (const char of line)
        if (char === MARK) refuse("in a here-document's body, which a line of the value could end");
    }
  }
  return i;
}
