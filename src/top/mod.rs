//! `pgvigil top`: a live terminal view of one server, refreshed every
//! couple of seconds (ratatui on crossterm).
//!
//! - `source`: where data comes from (collectors run here, or an agent).
//! - `state`: the data and the person's choices, plain and pure.
//! - `input`: keys to changes of the state.
//! - `render`: the state to the screen.
//!
//! The terminal is restored on every way out: `q`, an error, and a panic
//! (a hook restores it before the panic message is printed).

mod input;
mod render;
mod source;
mod state;

use std::io::Write as _;
use std::time::Duration;

use crossterm::event::{Event, KeyEvent};
use crossterm::{execute, terminal};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

use self::source::Source;
use self::state::{App, Explain, View};
use crate::config::Config;

/// Where `top` reads from.
pub enum Origin {
    /// Run the collectors against this config's first target.
    Config(Box<Config>),
    /// A running agent's base URL.
    Agent(String),
}

/// Runs the view until `q`.
pub async fn run(origin: Origin, refresh: Duration) -> anyhow::Result<()> {
    let mut source = match origin {
        Origin::Config(config) => Source::direct(*config, refresh).await?,
        Origin::Agent(url) => Source::remote(&url).await?,
    };
    let mut app = App::new(source.describe(), source.can_explain());
    let guard = TerminalGuard::take()?;
    let outcome = event_loop(&mut source, &mut app, refresh).await;
    drop(guard);
    source.stop().await;
    outcome
}

/// Restores the terminal: leaves the alternate screen and raw mode.
fn restore() {
    let _ = terminal::disable_raw_mode();
    let mut out = std::io::stdout();
    let _ = execute!(out, terminal::LeaveAlternateScreen, crossterm::cursor::Show);
    let _ = out.flush();
}

/// Holds the terminal in raw mode on the alternate screen until dropped,
/// and makes a panic restore it before its message is printed.
struct TerminalGuard;

impl TerminalGuard {
    fn take() -> anyhow::Result<TerminalGuard> {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        terminal::enable_raw_mode()?;
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            crossterm::cursor::Hide
        )?;
        Ok(TerminalGuard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Keys read on a thread of their own (crossterm's reads block).
fn keys() -> tokio::sync::mpsc::Receiver<KeyEvent> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    std::thread::spawn(move || {
        loop {
            match crossterm::event::poll(Duration::from_millis(200)) {
                Ok(true) => {
                    if let Ok(Event::Key(key)) = crossterm::event::read()
                        && tx.blocking_send(key).is_err()
                    {
                        return;
                    }
                }
                Ok(false) => {
                    if tx.is_closed() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    rx
}

async fn event_loop(source: &mut Source, app: &mut App, refresh: Duration) -> anyhow::Result<()> {
    let mut terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
    let mut keys = keys();
    let mut tick = tokio::time::interval(refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first refresh comes sooner: the collectors need a moment.
    let mut first = true;
    loop {
        terminal.draw(|f| render::draw(f, app))?;
        tokio::select! {
            _ = tick.tick() => {
                if first {
                    first = false;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                match source.fetch().await {
                    Ok(snapshot) => {
                        app.snapshot = snapshot;
                        app.error = None;
                        let count = app.statements().len();
                        app.selected = app.selected.min(count.saturating_sub(1));
                    }
                    Err(e) => app.error = Some(format!("{e:#}")),
                }
            }
            key = keys.recv() => {
                let Some(key) = key else { break };
                if let Some(input::Request::Explain(sql)) = input::handle(app, key) {
                    terminal.draw(|f| render::draw(f, app))?;
                    let text = source.explain(&sql).await;
                    if let (View::Detail(s), Some(Explain::Running(_))) = (&app.view, &app.explain) {
                        app.explain = Some(Explain::Done(s.queryid.clone(), text));
                    }
                }
                if app.quit {
                    break;
                }
            }
        }
    }
    Ok(())
}
