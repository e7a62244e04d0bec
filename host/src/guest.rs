//! The component being served, whichever wasi:http world it is written for,
//! and its replacement. Every request goes to the current generation: a 0.2
//! component's pool of instances (`proxy.rs`) or a 0.3 component's workers
//! (`service.rs`). A hot swap makes a new generation current; requests already
//! running finish on the old one, which goes with the last of them.

use crate::answer::{Answer, RequestBody};
use crate::component::Linked;
use crate::engine::World;
use crate::metrics::Metrics;
use crate::pool::{Pool, Reuse};
use crate::proxy::ProxyGuest;
use crate::sandbox::Sandbox;
use crate::service::ServiceGuest;
use crate::slot::Slot;
use arc_swap::ArcSwap;
use http_body_util::BodyExt as _;
use hyper::Request;
use replica_config::Config;
use std::sync::Arc;
use std::time::Duration;

/// One loaded component; the number grows with every replacement.
struct Generation {
    number: u64,
    served: Served,
}

enum Served {
    Proxy(Arc<ProxyGuest>),
    Service(ServiceGuest),
}

/// The guest, as requests reach it.
pub(crate) struct Guests {
    current: ArcSwap<Generation>,
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
    pub(crate) fn new(linked: Linked, sandbox: Sandbox, config: &Config, metrics: Metrics) -> Self {
        let settings = Settings {
            sandbox: Arc::new(sandbox),
            reuse: Reuse::from(config),
            timeout: config.request_timeout,
            metrics,
        };
        let served = settings.serve(linked);
        Self {
            current: ArcSwap::from_pointee(Generation { number: 0, served }),
            settings,
        }
    }

    /// Runs `req` in the current component while `slot` is held.
    pub(crate) async fn respond(&self, req: Request<impl RequestBody>, slot: Slot) -> Answer {
        let generation = self.current.load_full();
        match &generation.served {
            Served::Proxy(proxy) => proxy.clone().respond(req, slot).await,
            Served::Service(service) => {
                service
                    .respond(req.map(|body| body.boxed_unsync()), slot)
                    .await
            }
        }
    }

    /// Serves `linked` from now on; returns its generation number and world.
    pub(crate) fn replace(&self, linked: Linked) -> (u64, World) {
        let world = linked.world();
        let number = self.current.load().number + 1;
        let served = self.settings.serve(linked);
        self.current.store(Arc::new(Generation { number, served }));
        (number, world)
    }

    /// Frees the current component's instances that sat idle past their
    /// timeout (0.3 workers see to their own).
    pub(crate) fn sweep(&self) {
        if let Served::Proxy(proxy) = &self.current.load().served {
            proxy.sweep();
        }
    }

    /// The host is exiting: the current component's instances take no more
    /// requests.
    pub(crate) fn retire(&self) {
        if let Served::Service(service) = &self.current.load().served {
            service.retire();
        }
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        self.settings.reuse.idle_timeout
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
            Linked::Service(pre) => Served::Service(ServiceGuest::new(
                pre,
                self.sandbox.clone(),
                self.reuse,
                self.timeout,
                self.metrics.clone(),
            )),
        }
    }
}
