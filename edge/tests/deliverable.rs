//! What the hub accepts can be delivered (issue 8): any input topic that passes
//! `check_deliverable` encodes as valid MQTT, fits a client that accepts `MAX_PACKET_SIZE`, and
//! parses back to the same input, bag and body; anything longer is refused before encoding.

use bytes::{Bytes, BytesMut};
use edge::topic::{self, Topic};
use edge::PropertyBag;
use proptest::prelude::*;
use rumqttc::mqttbytes::v4::{Packet, Publish};
use rumqttc::mqttbytes::QoS;

fn text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(any::<char>(), 0..max).prop_map(|c| c.into_iter().collect()),
        // Characters that percent-encoding multiplies: ' ' → 3 bytes, 'é' → 6, '日' → 9.
        (0..max, prop::sample::select(vec![' ', 'é', '日', '&', 'x']))
            .prop_map(|(n, c)| std::iter::repeat_n(c, n).collect()),
    ]
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_-]{1,40}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn accepted_deliveries_encode_and_parse_back(
        device in name(),
        module in name(),
        input in name(),
        props in proptest::collection::vec((text(40_000), text(2_000)), 0..4),
        body_len in prop_oneof![0usize..64, 200_000usize..262_145],
    ) {
        let bag: PropertyBag = props
            .into_iter()
            .filter(|(k, _)| !k.is_empty())
            .collect();
        let t = topic::input(&device, &module, &input, &bag);
        let body = Bytes::from(vec![b'b'; body_len]);
        match topic::check_deliverable(&t, body.len()) {
            Ok(()) => {
                let mut p = Publish::new(t.clone(), QoS::AtLeastOnce, body.clone());
                p.pkid = 1;
                let mut buf = BytesMut::new();
                Packet::Publish(p).write(&mut buf, edge::session::MAX_PACKET_SIZE).unwrap();
                let Packet::Publish(back) = Packet::read(&mut buf, edge::session::MAX_PACKET_SIZE).unwrap() else {
                    panic!("not a PUBLISH");
                };
                prop_assert_eq!(&back.topic, &t);
                prop_assert_eq!(&back.payload, &body);
                match topic::parse(&back.topic) {
                    Topic::Input { device: d, module: m, input: i, bag: b } => {
                        prop_assert_eq!((d, m, i), (device.as_str(), module.as_str(), input.as_str()));
                        prop_assert_eq!(PropertyBag::decode(b).unwrap(), bag);
                    }
                    other => prop_assert!(false, "parsed as {:?}", other),
                }
            }
            Err(_) => prop_assert!(
                t.len() > topic::MAX_TOPIC_LEN || t.len() + body.len() > topic::MAX_MESSAGE_SIZE
            ),
        }
    }
}
