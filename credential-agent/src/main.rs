fn main() {
    eprintln!("credential-agent: not implemented yet");
    std::process::exit(2);
}
