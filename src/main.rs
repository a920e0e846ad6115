use clap::Parser;

fn main() {
    let cli = deputy::cli::Cli::parse();
    if let Err(message) = deputy::cli::run(cli) {
        eprintln!("deputy: error: {message}");
        std::process::exit(1);
    }
}
