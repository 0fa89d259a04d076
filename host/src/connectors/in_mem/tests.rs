use super::*;

fn dest(name: &str) -> Dest<Ignored> {
    dest_of("t1", name)
}

fn dest_of(tenant: &str, name: &str) -> Dest<Ignored> {
    let d = crate::connectors::Destination::parse("in-mem".into(), name.into(), "{}".into());
    Dest::parse(&d.unwrap().in_tenant(tenant)).unwrap()
}

fn secret(name: &str, value: &str, tag: &str) -> ExternalSecret {
    ExternalSecret {
        name: name.into(),
        value: Zeroizing::new(value.into()),
        tags: vec![("hashicorp:vault".into(), tag.into())],
    }
}

#[tokio::test]
async fn push_overwrites_value_and_tags_and_inspect_sorts_by_name() {
    let c = InMemory::default();
    let d = dest("d");
    c.push(&d, &secret("zeta", "1", "t1")).await.unwrap();
    c.push(&d, &secret("alpha", "2", "t2")).await.unwrap();
    c.push(&d, &secret("zeta", "3", "t3")).await.unwrap();
    let names: Vec<_> = c
        .inspect(&d)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.name, s.value.to_string(), s.tags[0].1.clone()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("alpha".to_string(), "2".to_string(), "t2".to_string()),
            ("zeta".to_string(), "3".to_string(), "t3".to_string()),
        ]
    );
}

#[tokio::test]
async fn delete_of_a_missing_object_or_destination_succeeds() {
    let c = InMemory::default();
    let d = dest("d");
    c.delete(&d, "nothing").await.unwrap();
    c.push(&d, &secret("a", "1", "")).await.unwrap();
    c.delete(&d, "a").await.unwrap();
    c.delete(&d, "a").await.unwrap();
    assert!(c.inspect(&d).await.unwrap().is_empty());
    assert!(c.objects().is_empty());
}

#[tokio::test]
async fn the_same_name_in_two_tenants_is_two_stores() {
    let c = InMemory::default();
    let (one, two) = (dest_of("t1", "d"), dest_of("t2", "d"));
    c.push(&one, &secret("a", "1", "")).await.unwrap();
    c.push(&two, &secret("a", "2", "")).await.unwrap();
    c.push(&two, &secret("b", "3", "")).await.unwrap();
    let values = |list: Vec<ExternalSecret>| -> Vec<String> {
        list.into_iter().map(|s| s.value.to_string()).collect()
    };
    assert_eq!(values(c.inspect(&one).await.unwrap()), ["1"]);
    assert_eq!(values(c.inspect(&two).await.unwrap()), ["2", "3"]);
    c.delete(&one, "a").await.unwrap();
    assert!(c.inspect(&one).await.unwrap().is_empty());
    assert_eq!(values(c.inspect(&two).await.unwrap()), ["2", "3"]);
}
