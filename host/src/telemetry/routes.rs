//! The `route` label of the request metrics, and the `http.route` of the
//! trace spans.

use std::sync::Arc;

/// The `route` label of a request: one of the paths the operator listed
/// (`--metrics-route`), or `other`. The host serves any guest and knows none
/// of its routes; the list keeps the label set bounded whatever clients send.
pub(crate) struct Routes {
    listed: Vec<Arc<str>>,
    other: Arc<str>,
}

impl Routes {
    pub(crate) fn new(paths: Vec<String>) -> Self {
        Self {
            listed: paths.into_iter().map(Arc::from).collect(),
            other: Arc::from("other"),
        }
    }

    pub(crate) fn label(&self, path: &str) -> Arc<str> {
        self.route(path).unwrap_or(&self.other).clone()
    }

    /// `path`, if it is one of the listed routes.
    pub(crate) fn route(&self, path: &str) -> Option<&Arc<str>> {
        self.listed.iter().find(|listed| listed.as_ref() == path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_labelled_only_as_listed() {
        let routes = Routes::new(vec!["/home".into(), "/heartbeat".into()]);
        assert_eq!(&*routes.label("/home"), "/home");
        assert_eq!(&*routes.label("/heartbeat"), "/heartbeat");
        assert_eq!(&*routes.label("/home/"), "other");
        assert_eq!(&*routes.label("/x"), "other");
        assert_eq!(&*Routes::new(Vec::new()).label("/home"), "other");
    }
}
