use super::functions::{map_case, sha256_hex, truncate_sha256};
use super::*;

/// Vault's documented example: mount `path/to/kv1/`, root namespace.
fn ctx() -> TemplateContext {
    TemplateContext {
        destination_type: "aws-sm".into(),
        destination_name: "my-dest".into(),
        namespace_path: String::new(),
        namespace_base_name: String::new(),
        namespace_id: "root".into(),
        mount_path: "path/to/kv1/".into(),
        mount_base_name: "kv1".into(),
        mount_accessor: "kv_1234".into(),
        secret_path: "path/to/secret1".into(),
        secret_base_name: "secret1".into(),
        secret_key: Some("foo".into()),
    }
}

fn render(src: &str) -> String {
    Template::parse(src)
        .unwrap_or_else(|e| panic!("{src}: {e}"))
        .render(&ctx())
        .unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn parse_err(src: &str) -> String {
    match Template::parse(src) {
        Ok(t) => panic!("{src} parsed: {t:?}"),
        Err(e) => e,
    }
}

#[test]
fn every_field() {
    let cases = [
        ("DestinationType", "aws-sm"),
        ("DestinationName", "my-dest"),
        ("NamespacePath", ""),
        ("NamespaceBaseName", ""),
        ("NamespaceID", "root"),
        ("MountPath", "path/to/kv1/"),
        ("MountBaseName", "kv1"),
        ("MountAccessor", "kv_1234"),
        ("SecretPath", "path/to/secret1"),
        ("SecretBaseName", "secret1"),
        ("SecretKey", "foo"),
    ];
    for (field, want) in cases {
        let src = format!("<{{{{ .{field} }}}}>");
        assert_eq!(render(&src), format!("<{want}>"), "{src}");
        let t = Template::parse(&src).unwrap();
        assert!(t.uses(field));
        assert!(t.uses(&format!(".{field}")));
    }
    let ns = TemplateContext {
        namespace_path: "ns1/ns2/".into(),
        namespace_base_name: "ns2".into(),
        namespace_id: "RQegM".into(),
        ..ctx()
    };
    let t = Template::parse("{{.NamespacePath}}|{{.NamespaceBaseName}}|{{.NamespaceID}}").unwrap();
    assert_eq!(t.render(&ns).unwrap(), "ns1/ns2/|ns2|RQegM");
}

#[test]
fn doc_examples() {
    assert_eq!(render("prefix-{{ .SecretPath }}"), "prefix-path/to/secret1");
    assert_eq!(render("{{ .SecretBaseName | uppercase }}"), "SECRET1");
    assert_eq!(
        render("{{ .MountAccessor }}_{{ .SecretKey }}"),
        "kv_1234_foo"
    );
    assert_eq!(
        render("{{ .SecretPath | replace \"/\" \"_\" }}"),
        "path_to_secret1"
    );
}

#[test]
fn default_templates() {
    let cases = [
        // aws-sm, gcp-sm, in-mem
        (
            "vault/{{ .MountAccessor }}/{{ .SecretPath }}",
            "vault/kv_1234/path/to/secret1",
        ),
        (
            "vault/{{ .MountAccessor }}/{{ .SecretPath }}/{{ .SecretKey }}",
            "vault/kv_1234/path/to/secret1/foo",
        ),
        // azure-kv
        (
            "vault-{{ .MountAccessor | replace \"_\" \"-\" }}-{{ .SecretPath }}",
            "vault-kv-1234-path/to/secret1",
        ),
        (
            "vault-{{ .MountAccessor | replace \"_\" \"-\" }}-{{ .SecretPath }}-{{ .SecretKey }}",
            "vault-kv-1234-path/to/secret1-foo",
        ),
        // gh, vercel-project
        (
            "VAULT_{{ .MountAccessor | uppercase }}_{{ .SecretPath | uppercase }}",
            "VAULT_KV_1234_PATH/TO/SECRET1",
        ),
        (
            "VAULT_{{ .MountAccessor | uppercase }}_{{ .SecretPath | uppercase }}_{{ .SecretKey | uppercase }}",
            "VAULT_KV_1234_PATH/TO/SECRET1_FOO",
        ),
    ];
    for (src, want) in cases {
        assert_eq!(render(src), want, "{src}");
        let t = Template::parse(src).unwrap();
        assert_eq!(t.uses("SecretKey"), src.contains(".SecretKey"), "{src}");
        assert!(t.uses("MountAccessor"));
        assert!(!t.uses("DestinationName"));
    }
}

#[test]
fn functions() {
    assert_eq!(render("{{ \"MiXeD\" | lowercase }}"), "mixed");
    assert_eq!(render("{{ \"MiXeD\" | uppercase }}"), "MIXED");
    assert_eq!(render("{{ uppercase .MountBaseName }}"), "KV1");
    assert_eq!(
        render("{{ replace \"/\" \"_\" .SecretPath }}"),
        "path_to_secret1"
    );
    assert_eq!(
        render("{{ replace \"t\" \"\" .SecretPath }}"),
        "pah/o/secre1"
    );
    assert_eq!(render("{{ .SecretPath | truncate 4 }}"), "path");
    assert_eq!(render("{{ truncate 100 .SecretPath }}"), "path/to/secret1");
    assert_eq!(
        render("{{ .SecretPath | sha256 }}"),
        "82bc7ee1b552fa5673632b16f3501b856fed7aba0e13ce7882b8aa6c5b056c6c"
    );
    assert_eq!(
        render("{{ \"\" | sha256 }}"),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(render("{{ .SecretPath | base64 }}"), "cGF0aC90by9zZWNyZXQx");
    assert_eq!(render("{{ \"ab\" | base64 }}"), "YWI=");
    // Chains, and a sub-pipeline as an argument.
    assert_eq!(
        render("{{ .SecretPath | replace \"/\" \"-\" | uppercase | truncate 7 }}"),
        "PATH-TO"
    );
    assert_eq!(
        render("{{ replace \"/\" (.MountAccessor | uppercase) .SecretPath }}"),
        "pathKV_1234toKV_1234secret1"
    );
    let t = Template::parse("{{ replace \"/\" (.SecretKey | lowercase) .SecretPath }}").unwrap();
    assert!(t.uses("SecretKey") && t.uses("SecretPath") && !t.uses("MountPath"));
    assert_eq!(render("{{ 42 }}-{{ -7 }}"), "42--7");
}

#[test]
fn truncate_sha256_like_vault() {
    // Short enough: unchanged.
    assert_eq!(
        render("{{ .SecretPath | truncate_sha256 15 }}"),
        "path/to/secret1"
    );
    // Longer: the first N-8 characters, then 8 hex digits of the SHA-256 of
    // the removed tail ("o/secret1" here), exactly N characters in all.
    let out = render("{{ .SecretPath | truncate_sha256 14 }}");
    assert_eq!(out, format!("path/t{}", &sha256_hex("o/secret1")[..8]));
    assert_eq!(out, "path/tfd39e3fb");
    assert_eq!(out.chars().count(), 14);
    assert_eq!(
        render("{{ truncate_sha256 9 \"abcdefghij\" }}"),
        "a".to_string() + &sha256_hex("bcdefghij")[..8]
    );
    // Characters, not bytes: no panic on multi-byte text.
    assert_eq!(
        truncate_sha256("ééééééééééé", 10),
        format!("éé{}", &sha256_hex("ééééééééé")[..8])
    );
    assert_eq!(render("{{ \"日本語テキスト\" | truncate 2 }}"), "日本");
}

#[test]
fn case_mapping_per_char() {
    assert_eq!(map_case("straße", char::to_uppercase), "STRAßE");
    assert_eq!(map_case("İSTANBUL", char::to_lowercase), "istanbul");
    assert_eq!(map_case("ΟΔΟΣ", char::to_lowercase), "οδοσ");
}

#[test]
fn strings_and_trim_markers() {
    assert_eq!(render(r#"{{ "a\"b\\c\td" }}"#), "a\"b\\c\td");
    assert_eq!(render(r#"{{ "\x41\u00e9\U0001F600\n" }}"#), "Aé😀\n");
    assert_eq!(render("{{ `raw \\n \"x\"` }}"), "raw \\n \"x\"");
    assert_eq!(render("{{ \"}}\" }}"), "}}");
    assert_eq!(render("a  {{- .MountBaseName -}}  \n b"), "akv1b");
    assert_eq!(render("a {{- .MountBaseName }} b"), "akv1 b");
    assert_eq!(render("a {{/* note */}}b"), "a b");
    assert_eq!(render("a {{- /* note */ -}} b"), "ab");
    assert_eq!(render("{{.SecretBaseName|uppercase}}"), "SECRET1");
    assert_eq!(render("plain"), "plain");
    assert_eq!(render("{ x }"), "{ x }");
}

#[test]
fn secret_key_needs_secret_key_granularity() {
    let t = Template::parse("{{ .SecretPath }}/{{ .SecretKey | uppercase }}").unwrap();
    let no_key = TemplateContext {
        secret_key: None,
        ..ctx()
    };
    let err = t.render(&no_key).unwrap_err();
    assert!(
        err.contains("only available with secret-key granularity"),
        "{err}"
    );
    assert!(err.contains("column 22"), "{err}");
    assert!(t.uses("SecretKey"));
    // Mentioning the word in text or a string is no reference.
    let t = Template::parse("SecretKey-{{ \"SecretKey\" }}-{{ .SecretPath }}").unwrap();
    assert!(!t.uses("SecretKey"));
    assert!(!t.uses("NoSuchField"));
    assert_eq!(
        t.render(&no_key).unwrap(),
        "SecretKey-SecretKey-path/to/secret1"
    );
}

#[test]
fn unknown_names() {
    let e = parse_err("{{ .InvalidTemplate }}");
    assert!(
        e.contains("unknown field .InvalidTemplate at column 4"),
        "{e}"
    );
    assert!(e.contains(".SecretPath"), "{e}");
    assert!(parse_err("{{ .secretPath }}").contains("unknown field"));
    assert!(parse_err("{{ .SecretPath.Foo }}").contains("unknown field .SecretPath.Foo"));
    let e = parse_err("x {{ .SecretPath | shout }}");
    assert!(
        e.contains("function \"shout\" not defined at column 20"),
        "{e}"
    );
    assert!(e.contains("truncate_sha256"), "{e}");
    for f in [
        "random 10",
        "uuid",
        "unix_time",
        "unix_time_millis",
        "timestamp \"x\"",
    ] {
        let e = parse_err(&format!("{{{{ {f} }}}}"));
        let name = f.split(' ').next().unwrap();
        assert!(
            e.contains(&format!(
                "function {name} is not supported in secret name templates"
            )),
            "{e}"
        );
    }
    assert!(parse_err("{{ printf \"%s\" .SecretPath }}").contains("printf is not supported"));
    assert!(parse_err("{{ if .SecretKey }}x{{ end }}").contains("\"if\" is not supported"));
    assert!(parse_err("{{ $x := 1 }}").contains("variables"));
    assert!(parse_err("{{ . }}").contains("alone"));
}

#[test]
fn syntax_errors() {
    let cases = [
        ("{{ .SecretPath", "unclosed action"),
        ("a {{ .SecretPath }", "unexpected character '}'"),
        ("{{ }}", "empty action"),
        ("{{-  -}}", "empty action"),
        ("{{- -}}", "bad number"),
        ("a }} b", "unexpected \"}}\" outside an action"),
        ("{{ .SecretPath }} }}", "outside an action"),
        ("{{ \"abc }}", "unterminated string"),
        ("{{ `abc }}", "unterminated raw string"),
        ("{{ \"a\nb\" }}", "unterminated string"),
        ("{{ \"\\q\" }}", "unknown escape sequence"),
        ("{{ \"\\xff\" }}", "invalid escape sequence"),
        ("{{ .SecretPath | }}", "missing function after \"|\""),
        ("{{ | uppercase }}", "missing value"),
        (
            "{{ .SecretPath || uppercase }}",
            "missing function after \"|\"",
        ),
        ("{{ .SecretPath | .MountPath }}", "not a function"),
        ("{{ .SecretPath .MountPath }}", "cannot take the argument"),
        ("{{ \"x\" 3 }}", "cannot take the argument"),
        ("{{ (.SecretPath }}", "unclosed \"(\""),
        ("{{ .SecretPath) }}", "unexpected \")\""),
        ("{{ () }}", "missing value"),
        ("{{ 3.5 }}", "bad number"),
        ("{{ 0x1f }}", "bad number"),
        ("{{ 99999999999999999999 }}", "bad number"),
        ("{{ .SecretPath ! }}", "unexpected character '!'"),
        ("{{ /* x */ }}", "unexpected character '/'"),
        ("{{/* x }}", "unclosed comment"),
        ("{{/* x */ }}", "must end with"),
        ("", "empty"),
    ];
    for (src, want) in cases {
        let e = parse_err(src);
        assert!(e.contains(want), "{src:?}: {e}");
    }
    let e = parse_err("line one\n{{ .Nope }}");
    assert!(e.contains("at line 2, column 4"), "{e}");
}

#[test]
fn arity_and_types() {
    let cases = [
        ("{{ .SecretPath | replace \"/\" }}", "takes 3 arguments"),
        ("{{ replace \"/\" \"_\" }}", "but got 2"),
        (
            "{{ .SecretPath | uppercase \"x\" }}",
            "uppercase at column 18 takes 1 argument",
        ),
        ("{{ uppercase }}", "but got 0"),
        (
            "{{ .SecretPath | truncate }}",
            "takes 2 arguments (length, value",
        ),
        (
            "{{ .SecretPath | truncate \"3\" }}",
            "argument length must be an integer",
        ),
        (
            "{{ 3 | uppercase }}",
            "argument value must be a string but is an integer",
        ),
        (
            "{{ replace 1 \"_\" .SecretPath }}",
            "argument old must be a string",
        ),
        ("{{ .SecretPath | truncate 0 }}", "at least 1 but was 0"),
        ("{{ .SecretPath | truncate -2 }}", "at least 1 but was -2"),
        (
            "{{ .SecretPath | truncate_sha256 8 }}",
            "at least 9 but was 8",
        ),
        (
            "{{ uppercase lowercase .SecretPath }}",
            "lowercase at column 14 takes 1 argument",
        ),
    ];
    for (src, want) in cases {
        let e = parse_err(src);
        assert!(e.contains(want), "{src:?}: {e}");
    }
}

#[test]
fn no_panics_on_odd_input() {
    for src in [
        "{{",
        "}}",
        "{",
        "}",
        "{{-",
        "{{- ",
        "-}}",
        "{{\"",
        "{{`",
        "{{ \"\\",
        "{{ \"\\u12",
        "é{{ .SecretPath }}ü",
        "{{ é }}",
        "{{ .é }}",
        "{{ (((",
        "{{ ))) }}",
        "{{ - }}",
        "{{ + }}",
        "{{ -- }}",
        "{{/*",
        "{{/**/",
        "{{ \"\\U0011ffff\" }}",
    ] {
        let _ = Template::parse(src).and_then(|t| t.render(&ctx()));
    }
    assert_eq!(render("é{{ .MountBaseName }}ü"), "ékv1ü");
}

/// A template whose output explodes (Vault's functions chain freely): the
/// parser refuses what could grow past the bound for placeholders of usual
/// length, and rendering stops any value that grows past it anyway, so no
/// template can make the engine run out of memory or time.
#[test]
fn output_that_explodes_is_refused_at_parse_time() {
    let chained = format!(
        "{{{{ .SecretPath{} }}}}",
        " | replace \"\" \"aaaaaaaaaa\"".repeat(5)
    );
    let e = parse_err(&chained);
    assert!(e.contains("can produce names of up to"), "{e}");
    let nested = "{{ replace \"\" \"aaaaaaaaaa\" (replace \"\" \"aaaaaaaaaa\" (replace \"\" \"aaaaaaaaaa\" .SecretPath)) }}";
    assert!(parse_err(nested).contains("can produce names of up to"));
    // Usual templates, and growth that stays small, are fine.
    for ok in [
        "{{ .SecretPath | replace \"/\" \"_\" | uppercase }}",
        "{{ .SecretPath | replace \"\" \"-\" }}",
        "{{ .SecretPath | base64 | truncate 99999999999 }}",
        "vault/{{ .MountAccessor }}/{{ .SecretPath | replace \"/\" \"__\" | truncate_sha256 64 }}",
    ] {
        Template::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

#[test]
fn a_value_that_grows_past_the_bound_while_rendering_is_an_error() {
    // Within the parse-time bound for usual placeholders, far beyond it for
    // a secret path of 20,000 characters.
    let t = Template::parse("{{ .SecretPath | replace \"\" \"0123456789\" }}").unwrap();
    let long = TemplateContext {
        secret_path: "p".repeat(20_000),
        ..ctx()
    };
    let e = t.render(&long).unwrap_err();
    assert!(e.contains("longer than"), "{e}");
    assert_eq!(t.render(&ctx()).unwrap().len(), 15 + 16 * 10);
    // A placeholder beyond the bound by itself.
    let plain = Template::parse("{{ .SecretPath }}").unwrap();
    let huge = TemplateContext {
        secret_path: "p".repeat(100_000),
        ..ctx()
    };
    assert!(plain.render(&huge).unwrap_err().contains("longer than"));
    // A field as the pattern: empty in the root namespace, so the path is
    // inserted between every two characters of itself.
    let squared = Template::parse("{{ replace .NamespacePath .SecretPath .SecretPath }}").unwrap();
    let long_path = TemplateContext {
        secret_path: "p".repeat(1_000),
        ..ctx()
    };
    assert!(
        squared
            .render(&long_path)
            .unwrap_err()
            .contains("longer than")
    );
}

#[test]
fn templates_are_bounded_in_length_and_nesting() {
    let long = format!("{}{{{{ .SecretPath }}}}", "a".repeat(5000));
    assert!(
        parse_err(&long).contains("at most 4096"),
        "{}",
        parse_err(&long)
    );
    let deep = format!(
        "{{{{ {}.SecretPath{} }}}}",
        "(".repeat(100),
        ")".repeat(100)
    );
    let e = parse_err(&deep);
    assert!(e.contains("nested"), "{e}");
    let fine = format!("{{{{ {}.SecretPath{} }}}}", "(".repeat(8), ")".repeat(8));
    assert_eq!(render(&fine), "path/to/secret1");
}
