//! The cart's side of AWS IoT's fleet-provisioning MQTT API
//! (`store_and_forward::wire::fleet`): CreateCertificateFromCsr and
//! RegisterThing, each as "send" then "wait for the answer", so the
//! pipeline can record (and the crash tests kill) between the two.
//!
//! It works over any link subscribed to the answer topics: its own
//! connection ([`FleetClient::connect`]: the claim certificate while
//! provisioning) or the daemon's ([`FleetClient::over`], during a
//! rotation; the daemon routes `$aws/...` messages to it). Answers are
//! matched by content, since mosquitto sends them to every subscriber:
//! a certificate is ours when it certifies our key; a registration when
//! it names our thing.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use store_and_forward::uplink::{
    self, Incoming, LinkConfig, LinkHandle, PublishProps, QoS, SwappableClientCert,
};
use store_and_forward::wire::fleet::{
    self as api, CreateCertificateFromCsrRequest, CreateCertificateFromCsrResponse, ErrorResponse,
    RegisterThingRequest, RegisterThingResponse,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{ProvisionError, cert};

/// A connection able to call the fleet-provisioning API.
#[derive(Debug)]
pub struct FleetClient {
    link: LinkHandle,
    incoming: mpsc::Receiver<Incoming>,
    template: String,
    timeout: Duration,
    own_link: bool,
}

/// The subscriptions a link needs for [`FleetClient::over`].
pub fn subscriptions(template: &str) -> Vec<(String, QoS)> {
    api::response_topics(template)
        .into_iter()
        .map(|t| (t, QoS::AtLeastOnce))
        .collect()
}

/// Whether a topic is one of the API's answers (for a daemon routing
/// messages to a [`FleetClient::over`]).
pub fn is_answer(topic: &str) -> bool {
    topic.starts_with("$aws/certificates/") || topic.starts_with("$aws/provisioning-templates/")
}

impl FleetClient {
    /// Opens a connection of its own with `cert` (client id `client_id`),
    /// subscribed to the answer topics before anything is published, and
    /// waits until it is up.
    pub async fn connect(
        link: LinkConfig,
        cert: Arc<SwappableClientCert>,
        template: &str,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<FleetClient, ProvisionError> {
        let (link, incoming) = uplink::start(link, Some(cert), subscriptions(template))?;
        if !link.wait_up(connect_timeout).await {
            let last = link.state().borrow().last_error.clone();
            link.shutdown().await;
            return Err(ProvisionError::Offline(
                last.unwrap_or_else(|| "no connection".into()),
            ));
        }
        Ok(FleetClient {
            link,
            incoming,
            template: template.to_owned(),
            timeout,
            own_link: true,
        })
    }

    /// Uses an existing link whose subscriptions include
    /// [`subscriptions`]; `incoming` carries its answer messages.
    pub fn over(
        link: LinkHandle,
        incoming: mpsc::Receiver<Incoming>,
        template: &str,
        timeout: Duration,
    ) -> FleetClient {
        FleetClient {
            link,
            incoming,
            template: template.to_owned(),
            timeout,
            own_link: false,
        }
    }

    /// Closes the connection when it is the client's own.
    pub async fn close(self) {
        if self.own_link {
            self.link.shutdown().await;
        }
    }

    fn drain_stale(&mut self) {
        while self.incoming.try_recv().is_ok() {}
    }

    async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), ProvisionError> {
        self.link
            .publish(
                topic,
                Bytes::from(payload),
                QoS::AtLeastOnce,
                PublishProps::default(),
            )
            .await?;
        Ok(())
    }

    /// Publishes a CreateCertificateFromCsr request (answers still
    /// waiting from before are dropped first).
    pub async fn send_csr(&mut self, csr_pem: &str) -> Result<(), ProvisionError> {
        self.drain_stale();
        let body = CreateCertificateFromCsrRequest {
            certificate_signing_request: csr_pem.to_owned(),
        };
        self.publish(
            api::CREATE_FROM_CSR,
            serde_json::to_vec(&body).unwrap_or_default(),
        )
        .await
    }

    /// Waits for a certificate for our key (`spki`, DER) with CN `cart_id`.
    pub async fn await_certificate(
        &mut self,
        spki: &[u8],
        cart_id: &str,
    ) -> Result<CreateCertificateFromCsrResponse, ProvisionError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let msg = self.next(deadline).await?;
            if msg.topic == api::CREATE_FROM_CSR_ACCEPTED {
                let Ok(r) =
                    serde_json::from_slice::<CreateCertificateFromCsrResponse>(&msg.payload)
                else {
                    tracing::warn!("unreadable create-from-csr answer ignored");
                    continue;
                };
                match cert::parse_pem(&r.certificate_pem) {
                    Ok(info)
                        if info.spki == spki && info.common_name.as_deref() == Some(cart_id) =>
                    {
                        return Ok(r);
                    }
                    // Another client's certificate (mosquitto broadcasts).
                    _ => continue,
                }
            } else if msg.topic == api::CREATE_FROM_CSR_REJECTED {
                return Err(rejected("CreateCertificateFromCsr", &msg.payload));
            }
        }
    }

    /// Publishes a RegisterThing request for `thing` with `token`.
    pub async fn send_register(&mut self, token: &str, thing: &str) -> Result<(), ProvisionError> {
        self.drain_stale();
        let body = RegisterThingRequest {
            certificate_ownership_token: token.to_owned(),
            parameters: [(api::SERIAL_NUMBER.to_owned(), thing.to_owned())].into(),
        };
        self.publish(
            &api::provision(&self.template),
            serde_json::to_vec(&body).unwrap_or_default(),
        )
        .await
    }

    /// Waits for RegisterThing's answer naming `thing`.
    pub async fn await_registered(
        &mut self,
        thing: &str,
    ) -> Result<RegisterThingResponse, ProvisionError> {
        let accepted = api::provision_accepted(&self.template);
        let refused = api::provision_rejected(&self.template);
        let deadline = Instant::now() + self.timeout;
        loop {
            let msg = self.next(deadline).await?;
            if msg.topic == accepted {
                match serde_json::from_slice::<RegisterThingResponse>(&msg.payload) {
                    Ok(r) if r.thing_name == thing => return Ok(r),
                    _ => continue,
                }
            } else if msg.topic == refused {
                return Err(rejected("RegisterThing", &msg.payload));
            }
        }
    }

    async fn next(&mut self, deadline: Instant) -> Result<Incoming, ProvisionError> {
        match tokio::time::timeout_at(deadline, self.incoming.recv()).await {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(ProvisionError::Offline("the link stopped".into())),
            Err(_) => Err(ProvisionError::NoAnswer(self.timeout)),
        }
    }
}

fn rejected(call: &'static str, payload: &[u8]) -> ProvisionError {
    match serde_json::from_slice::<ErrorResponse>(payload) {
        Ok(e) => ProvisionError::Rejected {
            call,
            status_code: e.status_code,
            error_code: e.error_code,
            message: e.error_message,
        },
        Err(_) => ProvisionError::Rejected {
            call,
            status_code: 0,
            error_code: "Unreadable".into(),
            message: "rejected answer unreadable".into(),
        },
    }
}
