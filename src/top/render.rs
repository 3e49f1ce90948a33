//! Drawing the [`App`] with ratatui: header, statements, sessions and a
//! footer; or one statement's details. Reads the app, changes nothing.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState, Wrap};

use super::input::HELP;
use super::state::{App, Explain, Statement, View, blocking_tree};
use crate::report::statements::age;

/// How the statements were collected is told in the title; a statement
/// without pg_stat_statements gets this advice.
pub const ENABLE_PGSS: &str = "To enable it: shared_preload_libraries = 'pg_stat_statements' in postgresql.conf, restart the server, then CREATE EXTENSION pg_stat_statements; in the database pgvigil connects to.";

fn ms(seconds: f64) -> String {
    format!("{:.2}", seconds * 1000.0)
}

fn or_dash(v: Option<String>) -> String {
    v.unwrap_or_else(|| "-".into())
}

/// A colour per wait event type, so the load bar reads like pg_activity's.
fn wait_colour(kind: &str) -> Color {
    match kind {
        "CPU" => Color::Green,
        "Lock" => Color::Red,
        "LWLock" => Color::Magenta,
        "IO" => Color::Blue,
        "Client" => Color::Cyan,
        "IPC" => Color::Yellow,
        _ => Color::Gray,
    }
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &App) {
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Min(6),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_header(frame, app, header);
    match &app.view {
        View::List => {
            let [statements, sessions] =
                Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)])
                    .areas(body);
            draw_statements(frame, app, statements);
            draw_sessions(frame, app, sessions);
        }
        View::Detail(s) => draw_detail(frame, app, s, body),
    }
    frame.render_widget(
        Paragraph::new(HELP).style(Style::default().add_modifier(Modifier::REVERSED)),
        footer,
    );
}

fn draw_header(frame: &mut Frame, app: &App, area: Rect) {
    let s = &app.snapshot;
    let up = match s.up {
        Some(true) => "up",
        Some(false) => "DOWN",
        None => "connecting",
    };
    let first = format!(
        "{} ({})  {up}  {}  {}  uptime {}",
        s.server,
        app.source,
        s.version,
        s.role,
        or_dash(s.uptime_seconds.map(age))
    );
    let second = format!(
        "connections {} of {} usable   replication lag {}   pgbouncer waiting {}",
        or_dash(s.connections.map(|c| format!("{c:.0}"))),
        or_dash(s.usable.map(|u| format!("{u:.0}"))),
        or_dash(s.lag_seconds.map(|l| format!("{l:.1}s"))),
        or_dash(s.pgbouncer_waiting.map(|w| format!("{w:.0}")))
    );
    // The load bar: one cell per 0.1 active session, coloured by wait type.
    let total: f64 = s.load.iter().map(|(_, v)| v).sum();
    let mut bar = vec![Span::raw(format!("load {total:>5.2} "))];
    let width = usize::from(area.width).saturating_sub(40).max(10);
    let scale = if total * 10.0 > width as f64 {
        width as f64 / total
    } else {
        10.0
    };
    for (kind, v) in &s.load {
        let cells = (v * scale).round() as usize;
        bar.push(Span::styled(
            "█".repeat(cells),
            Style::default().fg(wait_colour(kind)),
        ));
    }
    bar.push(Span::raw(" "));
    for (kind, v) in &s.load {
        bar.push(Span::styled(
            format!("{kind} {v:.2} "),
            Style::default().fg(wait_colour(kind)),
        ));
    }
    if let Some(w) = s.load_window_seconds {
        bar.push(Span::raw(format!(
            "(average active sessions, last {})",
            age(w)
        )));
    }
    let mut lines = vec![Line::from(first), Line::from(second), Line::from(bar)];
    if let Some(e) = &app.error {
        lines.push(Line::styled(
            format!("refresh failed: {e}"),
            Style::default().fg(Color::Red),
        ));
    }
    frame.render_widget(Paragraph::new(lines), area);
}

fn filters(app: &App) -> String {
    let mut out = String::new();
    if let Some(d) = &app.database {
        out.push_str(&format!("  database={d}"));
    }
    if let Some(r) = &app.role {
        out.push_str(&format!("  role={r}"));
    }
    out
}

fn draw_statements(frame: &mut Frame, app: &App, area: Rect) {
    let s = &app.snapshot;
    let title = format!(
        " statements over the last {}  sort: {}{} ",
        or_dash(s.interval_seconds.map(|i| format!("{i:.1}s"))),
        app.sort.as_str(),
        filters(app)
    );
    let block = Block::bordered().title(title);
    if let Some(note) = &s.statements_note {
        let mut text = vec![Line::from(note.clone())];
        if note.contains("pg_stat_statements") {
            text.push(Line::from(""));
            text.push(Line::from(ENABLE_PGSS));
        }
        frame.render_widget(
            Paragraph::new(text).block(block).wrap(Wrap { trim: false }),
            area,
        );
        return;
    }
    let rows: Vec<Row> = app
        .statements()
        .into_iter()
        .map(|st| {
            Row::new(vec![
                Cell::from(format!("{:.1}", st.calls_per_second)),
                Cell::from(ms(st.mean)),
                Cell::from(ms(st.p95)),
                Cell::from(ms(st.p99)),
                Cell::from(or_dash(st.share.map(|v| format!("{:.1}%", v * 100.0)))),
                Cell::from(st.wait.clone().unwrap_or_else(|| "-".into())),
                Cell::from(st.datname.clone()),
                Cell::from(st.query.replace('\n', " ")),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(6),
            Constraint::Length(18),
            Constraint::Length(10),
            Constraint::Min(20),
        ],
    )
    .header(
        Row::new([
            "CALLS/S", "MEAN MS", "P95 MS", "P99 MS", "TIME", "WAIT", "DATABASE", "QUERY",
        ])
        .style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
    .block(block);
    let mut state = TableState::default().with_selected(Some(app.selected));
    frame.render_stateful_widget(table, area, &mut state);
}

fn draw_sessions(frame: &mut Frame, app: &App, area: Rect) {
    let block =
        Block::bordered().title(" sessions: active and idle in transaction, blockers first ");
    let Some(sessions) = app.sessions() else {
        frame.render_widget(
            Paragraph::new("sessions are read only against a server (pgvigil top --dsn …)")
                .block(block),
            area,
        );
        return;
    };
    let rows: Vec<Row> = blocking_tree(&sessions)
        .into_iter()
        .map(|(depth, s)| {
            let pid = if depth == 0 {
                s.pid.to_string()
            } else {
                format!("{}└ {}", "  ".repeat(depth - 1), s.pid)
            };
            let style = if !s.blocked_by.is_empty() {
                Style::default().fg(Color::Red)
            } else {
                Style::default()
            };
            Row::new(vec![
                Cell::from(pid),
                Cell::from(s.datname.clone()),
                Cell::from(s.usename.clone()),
                Cell::from(s.state.clone()),
                Cell::from(age(s.age_seconds)),
                Cell::from(if s.wait.is_empty() {
                    "-".into()
                } else {
                    s.wait.clone()
                }),
                Cell::from(s.query.replace('\n', " ")),
            ])
            .style(style)
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(12),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(20),
            Constraint::Length(8),
            Constraint::Length(22),
            Constraint::Min(20),
        ],
    )
    .header(
        Row::new(["PID", "DATABASE", "USER", "STATE", "AGE", "WAIT", "QUERY"])
            .style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .block(block);
    frame.render_widget(table, area);
}

fn draw_detail(frame: &mut Frame, app: &App, s: &Statement, area: Rect) {
    let mut lines: Vec<Line> = vec![
        Line::styled("statement", Style::default().add_modifier(Modifier::BOLD)),
        Line::from(format!(
            "database {}  role {}  queryid {}  calls/s {:.1}  mean {} ms  p95 {} ms  p99 {} ms",
            s.datname,
            s.usename,
            s.queryid,
            s.calls_per_second,
            ms(s.mean),
            ms(s.p95),
            ms(s.p99)
        )),
    ];
    lines.extend(Text::from(s.query.clone()).lines);
    lines.push(Line::from(""));
    let plan = app.snapshot.plan_of(&s.queryid);
    match plan {
        Some(p) => {
            lines.push(Line::styled(
                format!("last automatic plan ({})", p.mode),
                Style::default().add_modifier(Modifier::BOLD),
            ));
            let found = crate::explain::findings::findings(&p.plan);
            lines.extend(Text::from(crate::explain::render::render_tree(&p.plan, &found)).lines);
        }
        None => lines.push(Line::from(
            "no automatic plan yet (statements slower than explain.slow_threshold are explained)",
        )),
    }
    lines.push(Line::from(""));
    match &app.explain {
        Some(Explain::Running(_)) => lines.push(Line::from("EXPLAIN running…")),
        Some(Explain::Done(id, text)) if *id == s.queryid => {
            lines.push(Line::styled(
                "EXPLAIN on demand (guarded)",
                Style::default().add_modifier(Modifier::BOLD),
            ));
            lines.extend(Text::from(text.clone()).lines);
        }
        _ => lines.push(Line::from("press e to run the guarded EXPLAIN now")),
    }
    frame.render_widget(
        Paragraph::new(lines)
            .block(Block::bordered().title(" details (Esc back) "))
            .wrap(Wrap { trim: false }),
        area,
    );
}
