use clap::Parser;

fn main() {
    let cli = match deputy::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match deputy::cli::usage_error(&e) {
            None => {
                let _ = e.print();
                std::process::exit(0);
            }
            Some(line) => {
                eprintln!("deputy: error: {line}");
                std::process::exit(1);
            }
        },
    };
    if let Err(message) = deputy::cli::run(cli) {
        eprintln!("deputy: error: {message}");
        std::process::exit(1);
    }
}
