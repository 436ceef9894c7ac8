//! `mobilellm`: the native command line over the same engine the browser runs.
//! Subcommands: generate, logits, tokenize, info, bench, convert, quantize. See README.md for the contract.

mod args;
mod commands;
mod quantize;

use std::process::ExitCode;

const USAGE: &str = "usage: mobilellm <generate|logits|tokenize|info|bench|convert|quantize> --model M.gguf [options]
  generate --model M (--prompt TEXT | --prompt-tokens 1,2,3) [--chat] [--system TEXT] [-n N]
           [--temperature T] [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R]
           [--repeat-last-n N] [--seed S] [--stop STR]... [--ctx N] [--json] [BACKEND]
  logits   --model M --prompt-tokens 1,2,3 [--top K] --json [BACKEND]
  tokenize --model M --text TEXT [--json]
  info     --model M [BACKEND]
  bench    --model M [--prompt-len 128] [--gen 128] [--profile] [--json] [BACKEND]
  convert  --hf DIR --out M.gguf [--type f32|f16|q8_0|q4_0|q4_1|q4_k_m]
  quantize --model M.gguf --out OUT.gguf --type TYPE (as convert's)
BACKEND: [--backend auto|gpu|cpu] (auto: the GPU unless wgpu finds only a software one)
         [--threads N] [--kv f16|f32] (CPU backend)  [--f32|--f16] (GPU backend)";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = argv.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    // "-n" is the one short flag; make it look like the others.
    let rest: Vec<String> = argv[1..].iter().map(|a| if a == "-n" { "--n".to_string() } else { a.clone() }).collect();
    let result = match cmd.as_str() {
        "generate" => commands::generate(&rest),
        "logits" => commands::logits(&rest),
        "tokenize" => commands::tokenize(&rest),
        "info" => commands::info(&rest),
        "bench" => commands::bench(&rest),
        "convert" => commands::convert(&rest),
        "quantize" => quantize::quantize(&rest),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        other => Err(commands::CliError::Usage(format!("unknown command {other:?}"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(commands::CliError::Usage(msg)) => {
            eprintln!("mobilellm: {msg}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(commands::CliError::Engine(e)) => {
            eprintln!("mobilellm: error [{}]: {e}", e.code());
            ExitCode::from(1)
        }
    }
}
