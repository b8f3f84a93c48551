// A KCL Java (2.x or 3.x) consumer for streamworker's tests: the real Scheduler and lease coordinator
// writing the real lease table, with a processor that records what it sees as JSON lines (the
// same events as tests/integration/recording_processor.py) and checkpoints after every batch.
//
//   java -cp 'classes:jars/*' KclHarness STREAM APP WORKER_ID RECORD_LOG KINESIS_URL DYNAMODB_URL
//
// SIGTERM starts KCL's graceful shutdown (shutdownRequested: checkpoint, release).
// -DclientVersion=COMPATIBLE_WITH_2X|3X sets KCL 3's CoordinatorConfig.clientVersionConfig (by
// reflection, so one source compiles against 2.x too). -Dquiet=true logs one "batch" event per
// batch instead of one "rec" per record (for benchmarks); -DmaxRecords=N sets GetRecords' limit;
// -DidleMillis=N the wait after an empty read (200 ms unless set; KCL's default is 1500).
// -DleaseAssignment=LEASE_COUNT_BASED|WORKER_UTILIZATION_AWARE sets KCL 3.5's
// LeaseManagementConfig.leaseAssignmentStrategy (by reflection: older KCLs have none).
// STREAM may be a comma-separated list: KCL's multi-stream mode (a MultiStreamTracker, lease keys
// account:stream:creationEpoch:shardId), each event naming its stream.

import java.io.FileWriter;
import java.io.IOException;
import java.io.PrintWriter;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;
import software.amazon.awssdk.http.Protocol;
import software.amazon.awssdk.http.nio.netty.NettyNioAsyncHttpClient;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.cloudwatch.CloudWatchAsyncClient;
import software.amazon.awssdk.services.dynamodb.DynamoDbAsyncClient;
import software.amazon.awssdk.services.kinesis.KinesisAsyncClient;
import software.amazon.awssdk.services.kinesis.model.DescribeStreamSummaryRequest;
import software.amazon.awssdk.services.kinesis.model.StreamDescriptionSummary;
import software.amazon.kinesis.common.ConfigsBuilder;
import software.amazon.kinesis.common.InitialPositionInStream;
import software.amazon.kinesis.common.InitialPositionInStreamExtended;
import software.amazon.kinesis.common.StreamConfig;
import software.amazon.kinesis.common.StreamIdentifier;
import software.amazon.kinesis.coordinator.CoordinatorConfig;
import software.amazon.kinesis.coordinator.Scheduler;
import software.amazon.kinesis.leases.LeaseManagementConfig;
import software.amazon.kinesis.lifecycle.events.InitializationInput;
import software.amazon.kinesis.lifecycle.events.LeaseLostInput;
import software.amazon.kinesis.lifecycle.events.ProcessRecordsInput;
import software.amazon.kinesis.lifecycle.events.ShardEndedInput;
import software.amazon.kinesis.lifecycle.events.ShutdownRequestedInput;
import software.amazon.kinesis.metrics.MetricsConfig;
import software.amazon.kinesis.metrics.NullMetricsFactory;
import software.amazon.kinesis.processor.FormerStreamsLeasesDeletionStrategy;
import software.amazon.kinesis.processor.MultiStreamTracker;
import software.amazon.kinesis.processor.ShardRecordProcessor;
import software.amazon.kinesis.processor.ShardRecordProcessorFactory;
import software.amazon.kinesis.retrieval.KinesisClientRecord;
import software.amazon.kinesis.retrieval.RetrievalConfig;
import software.amazon.kinesis.retrieval.polling.PollingConfig;

public class KclHarness {
    static PrintWriter log;
    static String worker;
    static final boolean QUIET = Boolean.getBoolean("quiet");

    static synchronized void event(String ev, String shard, String extra) {
        log.println("{\"ev\": \"" + ev + "\", \"w\": \"" + worker + "\", \"shard\": \"" + shard + "\", \"t\": "
                + (System.currentTimeMillis() / 1000.0) + extra + "}");
        log.flush();
    }

    static class Recording implements ShardRecordProcessor {
        String shard;
        final String stream;  // multi-stream mode: the shard's stream, named in every event

        Recording(String stream) {
            this.stream = stream;
        }

        void event(String ev, String shard, String extra) {
            KclHarness.event(ev, shard, stream == null ? extra : ", \"stream\": \"" + stream + "\"" + extra);
        }

        public void initialize(InitializationInput in) {
            shard = in.shardId();
            event("init", shard, ", \"checkpoint\": \"" + in.extendedSequenceNumber().sequenceNumber() + "\"");
        }

        public void processRecords(ProcessRecordsInput in) {
            String first = null, last = null;
            for (KinesisClientRecord r : in.records()) {
                if (!QUIET) {
                    String data = StandardCharsets.UTF_8.decode(r.data()).toString();
                    event("rec", shard, ", \"seq\": \"" + r.sequenceNumber() + "\", \"sub\": " + r.subSequenceNumber()
                            + ", \"key\": \"" + r.partitionKey() + "\", \"data\": \"" + data + "\"");
                }
                if (first == null) {
                    first = r.sequenceNumber();
                }
                last = r.sequenceNumber();
            }
            if (last == null) {
                return;
            }
            if (QUIET) {
                event("batch", shard, ", \"n\": " + in.records().size() + ", \"first\": \"" + first
                        + "\", \"seq\": \"" + last + "\"");
            }
            try {
                in.checkpointer().checkpoint();
                event("checkpointed", shard, ", \"seq\": \"" + last + "\"");
            } catch (Exception e) {
                event("checkpoint_refused", shard, ", \"error\": \"" + e.getClass().getSimpleName() + "\"");
            }
        }

        public void leaseLost(LeaseLostInput in) {
            event("lease_lost", shard, "");
        }

        public void shardEnded(ShardEndedInput in) {
            try {
                in.checkpointer().checkpoint();
            } catch (Exception e) {
                throw new RuntimeException(e);
            }
            event("shard_ended", shard, "");
        }

        public void shutdownRequested(ShutdownRequestedInput in) {
            try {
                in.checkpointer().checkpoint();
            } catch (Exception e) {
                event("checkpoint_refused", shard, ", \"error\": \"" + e.getClass().getSimpleName() + "\"");
            }
            event("shutdown_requested", shard, "");
        }
    }

    public static void main(String[] args) throws Exception {
        String stream = args[0], app = args[1];
        worker = args[2];
        log = new PrintWriter(new FileWriter(args[3], true));
        URI kinesisUrl = URI.create(args[4]), dynamoUrl = URI.create(args[5]);
        Region region = Region.US_EAST_1;
        StaticCredentialsProvider creds = StaticCredentialsProvider.create(AwsBasicCredentials.create("testing", "testing"));
        KinesisAsyncClient kinesis = KinesisAsyncClient.builder().region(region).credentialsProvider(creds)
                .endpointOverride(kinesisUrl)
                .httpClientBuilder(NettyNioAsyncHttpClient.builder().protocol(Protocol.HTTP1_1)).build();
        DynamoDbAsyncClient dynamo = DynamoDbAsyncClient.builder().region(region).credentialsProvider(creds)
                .endpointOverride(dynamoUrl).build();
        CloudWatchAsyncClient cloudWatch = CloudWatchAsyncClient.builder().region(region).credentialsProvider(creds)
                .endpointOverride(dynamoUrl).build();
        boolean multiStream = stream.contains(",");
        ShardRecordProcessorFactory factory = new ShardRecordProcessorFactory() {
            public ShardRecordProcessor shardRecordProcessor() {
                return new Recording(null);
            }

            public ShardRecordProcessor shardRecordProcessor(StreamIdentifier id) {
                return new Recording(multiStream ? id.streamName() : null);
            }
        };
        ConfigsBuilder cb = multiStream
                ? new ConfigsBuilder(tracker(kinesis, stream.split(",")), app, kinesis, dynamo, cloudWatch, worker, factory)
                : new ConfigsBuilder(stream, app, kinesis, dynamo, cloudWatch, worker, factory);
        CoordinatorConfig coordinator = cb.coordinatorConfig();
        String clientVersion = System.getProperty("clientVersion");
        if (clientVersion != null) {
            setClientVersion(coordinator, clientVersion);
        }
        LeaseManagementConfig leases = cb.leaseManagementConfig()
                .failoverTimeMillis(Long.parseLong(System.getProperty("failover", "10000")))
                .shardSyncIntervalMillis(5000);
        String assignment = System.getProperty("leaseAssignment");
        if (assignment != null) {
            setLeaseAssignment(leases, assignment);
        }
        Scheduler scheduler = new Scheduler(
                cb.checkpointConfig(),
                coordinator,
                leases,
                cb.lifecycleConfig(),
                metrics(cb),
                cb.processorConfig(),
                retrieval(cb, kinesis, multiStream ? null : stream));
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            // As AWS's KCL samples do: a bounded graceful shutdown, then a plain one. KCL waits
            // for a consumer that reached SHARD_END in this run until its lease cleanup runs (~1 min).
            try {
                Future<Boolean> done = scheduler.startGracefulShutdown();
                done.get(Long.getLong("gracefulMs", 15000), TimeUnit.MILLISECONDS);
            } catch (TimeoutException e) {
                System.err.println("graceful shutdown timed out; shutting down");
                scheduler.shutdown();
            } catch (Exception e) {
                System.err.println("graceful shutdown failed: " + e);
            }
        }));
        scheduler.run();
    }

    /** No metrics, unless -DcloudWatchMetrics=BUFFER_MS: KCL's own CloudWatch publisher, with the
     *  MultiLangDaemon's default dimensions (Operation, ShardId), every BUFFER_MS. */
    static MetricsConfig metrics(ConfigsBuilder cb) {
        String buffer = System.getProperty("cloudWatchMetrics");
        if (buffer == null) {
            return cb.metricsConfig().metricsFactory(new NullMetricsFactory());
        }
        return cb.metricsConfig().metricsBufferTimeMillis(Long.parseLong(buffer))
                .metricsEnabledDimensions(new java.util.HashSet<>(java.util.Arrays.asList("Operation", "ShardId")));
    }

    /** Polling from TRIM_HORIZON (multi-stream: each StreamConfig carries its own position). */
    static RetrievalConfig retrieval(ConfigsBuilder cb, KinesisAsyncClient kinesis, String singleStream) {
        RetrievalConfig retrieval = cb.retrievalConfig();
        if (singleStream != null) {
            retrieval.initialPositionInStreamExtended(
                    InitialPositionInStreamExtended.newInitialPosition(InitialPositionInStream.TRIM_HORIZON));
        }
        PollingConfig polling = singleStream == null ? new PollingConfig(kinesis) : new PollingConfig(singleStream, kinesis);
        return retrieval.retrievalSpecificConfig(polling.idleTimeBetweenReadsInMillis(Long.getLong("idleMillis", 200L))
                .maxRecords(Integer.getInteger("maxRecords", 10000)));
    }

    /** KCL's multi-stream identifiers (account:stream:creationEpoch), read from the streams themselves. */
    static MultiStreamTracker tracker(KinesisAsyncClient kinesis, String[] streams) {
        List<StreamConfig> configs = new ArrayList<>();
        for (String name : streams) {
            StreamDescriptionSummary s = kinesis.describeStreamSummary(
                    DescribeStreamSummaryRequest.builder().streamName(name).build()).join().streamDescriptionSummary();
            String account = s.streamARN().split(":")[4];
            String id = account + ":" + name + ":" + s.streamCreationTimestamp().getEpochSecond();
            configs.add(new StreamConfig(StreamIdentifier.multiStreamInstance(id),
                    InitialPositionInStreamExtended.newInitialPosition(InitialPositionInStream.TRIM_HORIZON)));
        }
        return new MultiStreamTracker() {
            public List<StreamConfig> streamConfigList() {
                return configs;
            }

            public FormerStreamsLeasesDeletionStrategy formerStreamsLeasesDeletionStrategy() {
                return new FormerStreamsLeasesDeletionStrategy.NoLeaseDeletionStrategy();
            }
        };
    }

    @SuppressWarnings({"unchecked", "rawtypes"})
    static void setLeaseAssignment(LeaseManagementConfig leases, String strategy) throws Exception {
        Class enumClass = Class.forName("software.amazon.kinesis.leases.LeaseAssignmentStrategy");
        LeaseManagementConfig.class.getMethod("leaseAssignmentStrategy", enumClass)
                .invoke(leases, Enum.valueOf(enumClass, strategy));
    }

    @SuppressWarnings({"unchecked", "rawtypes"})
    static void setClientVersion(CoordinatorConfig coordinator, String version) throws Exception {
        Class enumClass = Class.forName("software.amazon.kinesis.coordinator.CoordinatorConfig$ClientVersionConfig");
        Object value = Enum.valueOf(enumClass, "CLIENT_VERSION_CONFIG_" + version);
        CoordinatorConfig.class.getMethod("clientVersionConfig", enumClass).invoke(coordinator, value);
    }
}
