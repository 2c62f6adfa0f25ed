//! `scanner-sim`: a simulated barcode scanner on a serial line.
//!
//! Reads codes (one a line; see `hal::scanner::sim` for the format) from a
//! file or stdin and writes each as a scan to a serial device, or to a
//! pseudo-terminal it creates (`--pty`, printing the device path the cart
//! should open on the first line of stdout).
//!
//! ```text
//! scanner-sim [--port DEV | --pty] [--baud N] [--aim] [--terminator cr|lf|crlf|tab|etx]
//!             [--interval-ms N] [--hold] [FILE]
//! ```

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::process::ExitCode;
use std::time::Duration;

use hal::scanner::serial::Terminator;
use hal::scanner::sim::{self, SimConfig};

const USAGE: &str = "usage: scanner-sim [--port DEV | --pty] [--baud N] [--aim] \
[--terminator cr|lf|crlf|tab|etx] [--interval-ms N] [--hold] [FILE]";

/// A command line that cannot be run; the usage is printed and the exit
/// code is 2.
#[derive(Debug, thiserror::Error)]
enum ArgError {
    #[error("{0} needs a value")]
    MissingValue(&'static str),
    #[error("{0} is not a number")]
    NotANumber(&'static str),
    #[error("unknown terminator {0:?}")]
    Terminator(String),
    #[error("unknown argument {0:?}")]
    Unknown(String),
    #[error("give exactly one of --port and --pty")]
    PortOrPty,
    #[error("help requested")]
    Help,
}

struct Args {
    port: Option<String>,
    pty: bool,
    baud: u32,
    config: SimConfig,
    interval: Duration,
    hold: bool,
    file: Option<String>,
}

fn parse_args() -> Result<Args, ArgError> {
    let mut args = Args {
        port: None,
        pty: false,
        baud: 9600,
        config: SimConfig::default(),
        interval: Duration::ZERO,
        hold: false,
        file: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &'static str| it.next().ok_or(ArgError::MissingValue(name));
        match arg.as_str() {
            "--port" => args.port = Some(value("--port")?),
            "--pty" => args.pty = true,
            "--baud" => {
                args.baud = value("--baud")?
                    .parse()
                    .map_err(|_| ArgError::NotANumber("--baud"))?
            }
            "--aim" => args.config.aim = true,
            "--terminator" => {
                args.config.terminator = match value("--terminator")?.as_str() {
                    "cr" => Terminator::Cr,
                    "lf" => Terminator::Lf,
                    "crlf" => Terminator::Crlf,
                    "tab" => Terminator::Tab,
                    "etx" => Terminator::Etx,
                    other => return Err(ArgError::Terminator(other.to_owned())),
                }
            }
            "--interval-ms" => {
                let ms: u64 = value("--interval-ms")?
                    .parse()
                    .map_err(|_| ArgError::NotANumber("--interval-ms"))?;
                args.interval = Duration::from_millis(ms);
            }
            "--hold" => args.hold = true,
            "-h" | "--help" => return Err(ArgError::Help),
            f if !f.starts_with('-') && args.file.is_none() => args.file = Some(f.to_owned()),
            other => return Err(ArgError::Unknown(other.to_owned())),
        }
    }
    if args.pty == args.port.is_some() {
        return Err(ArgError::PortOrPty);
    }
    Ok(args)
}

fn run(args: Args) -> io::Result<usize> {
    let input: Box<dyn BufRead> = match &args.file {
        Some(path) => Box::new(BufReader::new(File::open(path)?)),
        None => Box::new(io::stdin().lock()),
    };
    if args.pty {
        let pty = nix::pty::openpty(None, None).map_err(io::Error::from)?;
        let mut t = nix::sys::termios::tcgetattr(&pty.slave).map_err(io::Error::from)?;
        nix::sys::termios::cfmakeraw(&mut t);
        nix::sys::termios::tcsetattr(&pty.slave, nix::sys::termios::SetArg::TCSANOW, &t)
            .map_err(io::Error::from)?;
        let path = nix::unistd::ttyname(&pty.slave).map_err(io::Error::from)?;
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "{}", path.display())?;
        stdout.flush()?;
        let mut master = File::from(pty.master);
        let n = sim::run(input, &mut master, &args.config, args.interval)?;
        if args.hold {
            // Keep the line up (the cart's driver sees a hang-up when the
            // master closes) until killed.
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        // Let the reader drain before the hang-up.
        std::thread::sleep(Duration::from_millis(200));
        drop(pty.slave);
        Ok(n)
    } else {
        let port = args.port.as_deref().unwrap_or_default();
        let mut out = serialport::new(port, args.baud)
            .timeout(Duration::from_secs(5))
            .open_native()
            .map_err(io::Error::from)?;
        sim::run(input, &mut out, &args.config, args.interval)
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(ArgError::Help) => {
            eprintln!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("scanner-sim: {err}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(n) => {
            eprintln!("scanner-sim: {n} scans written");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("scanner-sim: {e}");
            ExitCode::FAILURE
        }
    }
}
