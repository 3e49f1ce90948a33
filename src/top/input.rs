//! Keys to changes of the [`App`]. Pure: what needs I/O (an EXPLAIN) comes
//! back as a [`Request`] for the loop to carry out.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::state::{App, Explain, Sort, View};

/// Keys, as the footer lists them.
pub const HELP: &str = "q quit  t/c/p sort by time/calls/p99  d database  r role  ↑↓ select  Enter details  e EXPLAIN  Esc back";

/// Work a key asks of the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Run the guarded EXPLAIN of this statement text.
    Explain(String),
}

/// Applies one key press.
pub fn handle(app: &mut App, key: KeyEvent) -> Option<Request> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl_c = key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c');
    if ctrl_c || key.code == KeyCode::Char('q') {
        app.quit = true;
        return None;
    }
    let count = app.statements().len();
    match key.code {
        KeyCode::Char('t') => app.sort = Sort::Time,
        KeyCode::Char('c') => app.sort = Sort::Calls,
        KeyCode::Char('p') => app.sort = Sort::P99,
        KeyCode::Char('d') => {
            app.database = App::cycle(&app.database, app.databases());
            app.selected = 0;
        }
        KeyCode::Char('r') => {
            app.role = App::cycle(&app.role, app.roles());
            app.selected = 0;
        }
        KeyCode::Down | KeyCode::Char('j') => {
            app.selected = (app.selected + 1).min(count.saturating_sub(1));
        }
        KeyCode::Up | KeyCode::Char('k') => app.selected = app.selected.saturating_sub(1),
        KeyCode::Enter => {
            if let Some(s) = app.statements().get(app.selected) {
                app.view = View::Detail((*s).clone());
                app.explain = None;
            }
        }
        KeyCode::Esc | KeyCode::Backspace => app.view = View::List,
        KeyCode::Char('e') => {
            if let View::Detail(s) = &app.view {
                if !app.can_explain {
                    app.explain = Some(Explain::Done(
                        s.queryid.clone(),
                        "EXPLAIN on demand needs a DSN (pgvigil top --dsn …), not --agent".into(),
                    ));
                    return None;
                }
                app.explain = Some(Explain::Running(s.queryid.clone()));
                return Some(Request::Explain(s.query.clone()));
            }
        }
        _ => {}
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::state::Statement;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn keys_change_the_view() {
        let mut app = App::new("x".into(), true);
        app.snapshot.statements = vec![
            Statement {
                queryid: "1".into(),
                query: "SELECT 1".into(),
                total: 2.0,
                ..Statement::default()
            },
            Statement {
                queryid: "2".into(),
                query: "SELECT $1".into(),
                total: 1.0,
                ..Statement::default()
            },
        ];
        handle(&mut app, key(KeyCode::Char('c')));
        assert_eq!(app.sort, Sort::Calls);
        handle(&mut app, key(KeyCode::Char('t')));
        handle(&mut app, key(KeyCode::Down));
        handle(&mut app, key(KeyCode::Down));
        assert_eq!(app.selected, 1);
        handle(&mut app, key(KeyCode::Enter));
        assert!(matches!(&app.view, View::Detail(s) if s.queryid == "2"));
        let asked = handle(&mut app, key(KeyCode::Char('e')));
        assert_eq!(asked, Some(Request::Explain("SELECT $1".into())));
        assert_eq!(app.explain, Some(Explain::Running("2".into())));
        handle(&mut app, key(KeyCode::Esc));
        assert_eq!(app.view, View::List);
        assert!(!app.quit);
        handle(&mut app, key(KeyCode::Char('q')));
        assert!(app.quit);
    }
}
