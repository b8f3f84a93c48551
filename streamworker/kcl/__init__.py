"""The KCL's own formats: ``properties`` reads a MultiLangDaemon .properties file into settings,
``multilang`` speaks the MultiLangDaemon's stdin/stdout protocol to a child processor."""
