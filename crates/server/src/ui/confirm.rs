//! The confirmation page shown before a disruptive action (promote, delete).
//! It is a page of its own, not a script dialog, so it works without
//! JavaScript and with the keyboard; its form posts to the action.

use askama::Template;

use super::render::Layout;
use super::session::Session;

pub struct Confirm {
    pub title: String,
    pub explanation: String,
    /// Where the form posts.
    pub action: String,
    pub button: String,
    /// A red button for destructive actions.
    pub danger: bool,
    /// Where *Cancel* goes.
    pub cancel: String,
}

#[derive(Template)]
#[template(path = "confirm.html")]
pub struct ConfirmPage {
    layout: Layout,
    confirm: Confirm,
}

impl ConfirmPage {
    pub fn new(session: &Session, active: &'static str, confirm: Confirm) -> ConfirmPage {
        ConfirmPage {
            layout: Layout::new(session, active),
            confirm,
        }
    }
}
