//! Routing: a message a module sent, through the route table, to the delivery queues of the
//! module inputs its routes name (see the module doc of `state`).

use super::*;

/// Outputs of one connection whose routes are kept resolved; messages on further outputs are
/// routed just the same, resolving their routes each time.
pub(super) const CACHED_OUTPUTS: usize = 64;

/// What routing one connection's messages needs every time, kept in its [`Session`].
#[derive(Default)]
pub(crate) struct SenderRouting {
    /// The message being routed, decoded into reused buffers.
    bag: BagBuffer,
    /// Its bag as delivered (without `$.on`, with `$.cdid`/`$.cmid`), encoded once.
    encoded: String,
    /// Indices into `OutputRoutes::routes` of the routes the message takes.
    matched: Vec<usize>,
    /// Its deliveries, all built and checked before any is queued.
    pub(super) pending: Vec<(Arc<DeliveryQueue>, Routed)>,
    /// `edgehub_message_size_bytes` of this connection.
    message_size: Option<Histogram>,
    /// Per output name; `without_output` for messages that name none.
    pub(super) outputs: HashMap<Box<str>, Arc<OutputRoutes>>,
    without_output: Option<Arc<OutputRoutes>>,
}

/// The routes a connection's messages on one output can take, resolved once.
pub(super) struct OutputRoutes {
    /// `/messages/modules/{m}/outputs/{o}` or `/messages/modules/{m}`: the message source.
    source: String,
    /// The labels of what this output sends: the sender and the output ("" without one).
    from: SharedLabel,
    output: SharedLabel,
    received: Counter,
    /// The routes whose FROM takes this source, in table order (WHERE is evaluated per message).
    routes: Vec<RouteUse>,
}

struct RouteUse {
    /// Index into the route table.
    route: usize,
    /// `None` for `$upstream`.
    target: Option<(Arc<DeliveryQueue>, Arc<Delivery>)>,
}

impl Hub {
    /// Routes a message a module sent; returns how many endpoints took it. Every delivery is
    /// built and checked before any is queued: a message that cannot reach one of its targets
    /// is refused whole (before the PUBACK), never queued to block that module's input.
    pub fn route(
        self: &Arc<Self>,
        sender: &Session,
        bag_encoded: &str,
        body: Bytes,
    ) -> Result<usize, RouteError> {
        // Only this connection's read loop routes its messages: never contended, and the
        // buffers are cleared before each use, so a poisoned lock holds nothing stale.
        let mut routing = sender.routing.lock().unwrap_or_else(|e| e.into_inner());
        let routing = &mut *routing;
        let taken = self.route_with(sender, routing, bag_encoded, body);
        routing.pending.clear();
        taken
    }

    fn route_with(
        self: &Arc<Self>,
        sender: &Session,
        routing: &mut SenderRouting,
        bag_encoded: &str,
        body: Bytes,
    ) -> Result<usize, RouteError> {
        routing.bag.decode(bag_encoded)?;
        let out = self.resolved_output(sender, routing);
        out.received.inc();
        (self.message_size(sender, &mut routing.message_size)).observe(body.len() as f64);
        if !self.match_routes(sender, &out, routing) {
            self.dropped(DropReason::NoRoute, &out);
            tracing::debug!(from = %sender.name, source = %out.source, "no route matches; message dropped");
            return Ok(0);
        }
        self.encode_delivered_bag(sender, routing);
        let upstream = self.build_deliveries(&out, routing, &body)?;
        for _ in 0..upstream {
            self.dropped(DropReason::Upstream, &out);
        }
        let pending = &mut routing.pending;
        pending.retain(|_| {
            let drop = self.faults.drop(Path::Messages);
            if drop {
                self.dropped(DropReason::Fault, &out);
            }
            !drop
        });
        if let Some(store) = &self.store {
            if !self.persist(store, pending) {
                self.unacknowledged(&out, pending.len());
            }
        }
        Ok(self.enqueue(&out, pending))
    }

    /// What messages on the output the decoded bag names (`$.on`) need: kept by the connection,
    /// or resolved now (and kept, for up to `CACHED_OUTPUTS` outputs).
    fn resolved_output(
        self: &Arc<Self>,
        sender: &Session,
        routing: &mut SenderRouting,
    ) -> Arc<OutputRoutes> {
        let SenderRouting {
            bag,
            outputs,
            without_output,
            ..
        } = routing;
        let Some(output) = bag.get(OUTPUT_NAME) else {
            return without_output
                .get_or_insert_with(|| Arc::new(self.output_routes(sender, None)))
                .clone();
        };
        if let Some(out) = outputs.get(output) {
            return out.clone();
        }
        let out = Arc::new(self.output_routes(sender, Some(output)));
        if outputs.len() < CACHED_OUTPUTS {
            outputs.insert(output.into(), out.clone());
        }
        out
    }

    /// `edgehub_message_size_bytes` of this connection, resolved at its first message.
    fn message_size<'r>(&self, sender: &Session, kept: &'r mut Option<Histogram>) -> &'r Histogram {
        kept.get_or_insert_with(|| {
            let labels = IdLabels {
                id: sender.name.clone(),
            };
            self.metrics.message_size.get_or_create(&labels).clone()
        })
    }

    /// Keeps in `routing.matched` the routes of `out` whose WHERE the decoded message meets;
    /// whether there is any.
    fn match_routes(
        &self,
        sender: &Session,
        out: &OutputRoutes,
        routing: &mut SenderRouting,
    ) -> bool {
        let SenderRouting { bag, matched, .. } = routing;
        // `$.on` is still in the bag here; WHERE sees it only as `outputName`, never as an
        // application property (`$.` names are system properties).
        let view = crate::routes::RoutingView {
            device: &self.settings.device_id,
            module: &sender.module,
            output: bag.get(OUTPUT_NAME),
            bag,
        };
        let routes = self.routes.routes();
        matched.clear();
        matched.extend(
            (out.routes.iter().enumerate())
                .filter(|(_, u)| routes[u.route].matches(&out.source, &view))
                .map(|(i, _)| i),
        );
        !matched.is_empty()
    }

    /// The bag as delivered, encoded once for every target: without `$.on`, with the sender's
    /// `$.cdid` and `$.cmid`.
    fn encode_delivered_bag(&self, sender: &Session, routing: &mut SenderRouting) {
        let SenderRouting { bag, encoded, .. } = routing;
        bag.remove(OUTPUT_NAME);
        bag.insert(CONNECTION_DEVICE_ID, &self.settings.device_id);
        bag.insert(CONNECTION_MODULE_ID, &sender.module);
        encoded.clear();
        bag.encode_into(encoded);
    }

    /// The message's delivery to each matched route's module input, built and checked into
    /// `routing.pending` (the first that cannot be delivered refuses the message); returns how
    /// many matched routes send to `$upstream` instead.
    fn build_deliveries(
        &self,
        out: &OutputRoutes,
        routing: &mut SenderRouting,
        body: &Bytes,
    ) -> Result<usize, RouteError> {
        let SenderRouting {
            encoded,
            matched,
            pending,
            ..
        } = routing;
        let routes = self.routes.routes();
        let mut shared_bag: Option<Arc<str>> = None;
        let now = Instant::now();
        let mut upstream = 0;
        for &i in matched.iter() {
            let use_ = &out.routes[i];
            let route = &routes[use_.route];
            let Some((queue, via)) = &use_.target else {
                upstream += 1;
                if !self.upstream_logged.swap(true, Ordering::Relaxed) {
                    tracing::warn!(route = %route.name, "route sends to $upstream; there is no IoT Hub behind the local hub, so such messages are counted in edgehub_messages_dropped_total{{reason=\"upstream\"}} and dropped (logged once)");
                }
                continue;
            };
            let topic = via.topic(encoded);
            check_deliverable(&topic, body.len())
                .map_err(|error| undeliverable(route, queue, error))?;
            let routed = Routed {
                topic: Some(topic),
                bag: shared_bag
                    .get_or_insert_with(|| Arc::from(encoded.as_str()))
                    .clone(),
                body: body.clone(),
                via: via.clone(),
                received: Some(now),
                expires: now + via.ttl,
                seq: None,
            };
            pending.push((queue.clone(), routed));
        }
        Ok(upstream)
    }

    /// Queues each delivery; one whose queue is full is dropped and counted. Returns how many
    /// were queued.
    fn enqueue(
        &self,
        out: &OutputRoutes,
        pending: &mut Vec<(Arc<DeliveryQueue>, Routed)>,
    ) -> usize {
        let mut taken = 0;
        for (queue, routed) in pending.drain(..) {
            if queue.push(routed, self.settings.queue_size) {
                taken += 1;
            } else {
                tracing::warn!(target_module = %queue.module, capacity = self.settings.queue_size, "delivery queue full; message dropped (edgehub_messages_dropped_total{{reason=\"queue_overflow\"}})");
                self.dropped(DropReason::QueueOverflow, out);
            }
        }
        taken
    }

    /// Resolves what messages from `sender` on `output` need: their source, their labels and
    /// counters, and the routes whose FROM takes them with the target queues and deliveries.
    fn output_routes(self: &Arc<Self>, sender: &Session, output: Option<&str>) -> OutputRoutes {
        let module = &sender.module;
        let source = match output {
            Some(o) => format!("/messages/modules/{module}/outputs/{o}"),
            None => format!("/messages/modules/{module}"),
        };
        let from = sender.name.clone();
        let output: SharedLabel = output.unwrap_or_default().into();
        let received = self
            .metrics
            .messages_received
            .get_or_create(&ReceivedLabels {
                id: from.clone(),
                route_output: output.clone(),
                ms_telemetry: MsTelemetry,
            })
            .clone();
        let routes = (self.routes.routes().iter().enumerate())
            .filter(|(_, r)| r.source.matches(&source))
            .map(|(i, r)| RouteUse {
                route: i,
                target: match &r.sink {
                    Sink::Upstream => None,
                    Sink::Module {
                        module: target,
                        input,
                    } => {
                        let queue = self.queue(target);
                        let ttl = (r.time_to_live_secs.map(Duration::from_secs))
                            .unwrap_or(self.settings.default_ttl);
                        let via = Via {
                            from: from.clone(),
                            from_output: output.clone(),
                            input,
                            priority: r.priority,
                            ttl,
                        };
                        let via = Delivery::new(&queue, &self.metrics, via);
                        Some((queue, Arc::new(via)))
                    }
                },
            })
            .collect();
        OutputRoutes {
            source,
            from,
            output,
            received,
            routes,
        }
    }

    fn dropped(&self, reason: DropReason, out: &OutputRoutes) {
        count_drop(&self.metrics, reason, &out.from, &out.output);
    }

    /// `count` deliveries of a message the store did not take: edgeHub's
    /// `edgehub_messages_unack_total{reason="storage_failure"}` (ours are still queued in memory).
    fn unacknowledged(&self, out: &OutputRoutes, count: usize) {
        self.metrics
            .messages_unack
            .get_or_create(&crate::metrics::UnackLabels {
                reason: crate::metrics::StorageFailure,
                from: out.from.clone(),
                from_route_output: out.output.clone(),
                ms_telemetry: MsTelemetry,
            })
            .inc_by(count as u64);
    }
}

/// Why a route's module input cannot take a message (its topic or size).
fn undeliverable(route: &Route, queue: &DeliveryQueue, error: DeliveryError) -> RouteError {
    let Sink::Module { input, .. } = &route.sink else {
        unreachable!("a route with a delivery sends to a module")
    };
    RouteError::Undeliverable {
        target: queue.module.clone(),
        input: input.clone(),
        error,
    }
}
