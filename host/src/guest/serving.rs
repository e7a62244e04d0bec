//! The component being served, whichever wasi:http world it is written for,
//! and its replacement. [`Guests`], shared by every worker, holds the current
//! generation: the component, linked. Each worker serves it from instances of
//! its own ([`LocalGuests`]): a 0.2 component's pool (`p2/`) or a 0.3
//! component's instance workers (`p3/`), nothing shared with another
//! worker on the request path. A hot swap makes a new generation current;
//! each worker takes it up on its next request (or its next sweep), and its
//! requests already running finish on the old one, which goes with the last
//! of them.

use crate::guest::calls::p2::pool::Pool;
use crate::guest::calls::p2::proxy::ProxyGuest;
use crate::guest::calls::p3::service::ServiceGuest;
use crate::guest::calls::reuse::Reuse;
use crate::guest::component::Linked;
use crate::guest::component::world::World;
use crate::guest::results::answer::{Answer, RequestBody};
use crate::guest::results::slot::Slot;
use crate::guest::sandbox::Sandbox;
use crate::telemetry::metrics::Metrics;
use arc_swap::ArcSwap;
use futures::future::Either;
use http_body_util::BodyExt as _;
use hyper::Request;
use replica_config::Config;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// One loaded component; the number grows with every replacement.
struct Generation {
    number: u64,
    linked: Linked,
    /// The component's SHA-256, as its requests' trace spans name it.
    digest: Arc<str>,
}

/// The component being served, shared by every worker.
pub(crate) struct Guests {
    current: ArcSwap<Generation>,
    /// `current`'s number, read on every request.
    number: AtomicU64,
    settings: Settings,
}

/// What every generation's instances share.
struct Settings {
    sandbox: Arc<Sandbox>,
    reuse: Reuse,
    timeout: Duration,
    metrics: Metrics,
}

impl Guests {
    pub(crate) fn new(
        (linked, digest): (Linked, String),
        sandbox: Sandbox,
        config: &Config,
        metrics: Metrics,
    ) -> Self {
        if linked.imports_store() {
            sandbox.announce_store();
        }
        Self {
            current: ArcSwap::from_pointee(Generation {
                number: 0,
                linked,
                digest: digest.into(),
            }),
            number: AtomicU64::new(0),
            settings: Settings {
                sandbox: Arc::new(sandbox),
                reuse: Reuse::from(config),
                timeout: config.request_timeout,
                metrics,
            },
        }
    }

    /// Serves `linked` (whose SHA-256 is `digest`) from now on; returns its
    /// generation number and world.
    pub(crate) fn replace(&self, linked: Linked, digest: &str) -> (u64, World) {
        let world = linked.world();
        if linked.imports_store() {
            self.settings.sandbox.announce_store();
        }
        let number = self.current.load().number + 1;
        self.current.store(Arc::new(Generation {
            number,
            linked,
            digest: digest.into(),
        }));
        self.number.store(number, Ordering::Release);
        (number, world)
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        self.settings.reuse.idle_timeout
    }

    /// Instances of the current component, for one worker.
    fn serve_current(&self) -> Local {
        let generation = self.current.load_full();
        Local {
            number: generation.number,
            digest: generation.digest.clone(),
            served: self.settings.serve(generation.linked.clone()),
        }
    }
}

/// One worker's instances of the current component.
pub(crate) struct LocalGuests {
    shared: Arc<Guests>,
    /// Only this worker's thread uses it: never contended.
    local: ArcSwap<Local>,
}

struct Local {
    number: u64,
    digest: Arc<str>,
    served: Served,
}

enum Served {
    Proxy(Arc<ProxyGuest>),
    Service(Arc<ServiceGuest>),
}

impl LocalGuests {
    pub(crate) fn new(shared: Arc<Guests>) -> Self {
        let local = ArcSwap::from_pointee(shared.serve_current());
        Self { shared, local }
    }

    /// Starts `req` in the current component while `slot` is held; the
    /// future is its answer. It holds no request: the 0.2 call has taken it,
    /// and the 0.3 one is boxed (sized for 0.3's machinery, it would make
    /// every connection's slot for a request future that much larger).
    #[allow(clippy::type_complexity)]
    pub(crate) fn call<B: RequestBody>(
        &self,
        req: Request<B>,
        slot: Slot,
    ) -> Either<
        impl Future<Output = Answer> + Send + 'static + use<B>,
        Pin<Box<dyn Future<Output = Answer> + Send>>,
    > {
        let local = self.current();
        match &local.served {
            Served::Proxy(proxy) => Either::Left(proxy.call(req, slot)),
            Served::Service(service) => {
                // Its instances live as long as this request.
                let service = service.clone();
                let req = req.map(|body| body.boxed_unsync());
                Either::Right(Box::pin(async move { service.respond(req, slot).await }))
            }
        }
    }

    /// The generation serving the next request, and its component's
    /// SHA-256 (for its trace span).
    pub(crate) fn serving(&self) -> (u64, Arc<str>) {
        let local = self.current();
        (local.number, local.digest.clone())
    }

    /// This worker's instances of the current generation, made anew if it
    /// changed since the last request.
    fn current(&self) -> Arc<Local> {
        let local = self.local.load_full();
        if local.number == self.shared.number.load(Ordering::Acquire) {
            return local;
        }
        let fresh = Arc::new(self.shared.serve_current());
        self.local.store(fresh.clone());
        fresh
    }

    /// Frees instances that sat idle past their timeout (0.3 workers see to
    /// their own), and those of a replaced component.
    pub(crate) fn sweep(&self) {
        if let Served::Proxy(proxy) = &self.current().served {
            proxy.sweep();
        }
    }

    /// The host is exiting: the current component's instances take no more
    /// requests.
    pub(crate) fn retire(&self) {
        if let Served::Service(service) = &self.local.load().served {
            service.retire();
        }
    }
}

impl Settings {
    /// The instances `linked` is served from.
    fn serve(&self, linked: Linked) -> Served {
        match linked {
            Linked::Proxy(pre) => Served::Proxy(Arc::new(ProxyGuest::new(
                Pool::new(pre, self.sandbox.clone(), self.reuse, self.metrics.clone()),
                self.timeout,
                self.metrics.clone(),
            ))),
            Linked::Service(pre) => Served::Service(Arc::new(ServiceGuest::new(
                pre,
                self.sandbox.clone(),
                self.reuse,
                self.timeout,
                self.metrics.clone(),
            ))),
        }
    }
}
